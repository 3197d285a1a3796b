//! Each rule family, broken one way at a time from a compliant object.

mod support;

use raygate::engine::Context;
use raygate::policy::{Action, Mode, Policy};
use raygate::ray::ObjectRef;
use serde_json::{Value, json};
use support::*;

fn only(decision: &raygate::Decision) -> (&'static str, String, bool) {
    assert_eq!(
        decision.violations.len(),
        1,
        "expected one violation, got {:#?}",
        decision.violations
    );
    let v = &decision.violations[0];
    (v.rule.as_str(), v.path.clone(), v.fillable)
}

/// One rule's findings: (rule, path, fillable).
fn findings_of(d: &raygate::Decision, rule: &str) -> Vec<(&'static str, String, bool)> {
    d.violations
        .iter()
        .filter(|v| v.rule.as_str() == rule)
        .map(|v| (v.rule.as_str(), v.path.clone(), v.fillable))
        .collect()
}

#[test]
fn the_compliant_builders_break_no_rule() {
    for object in [cluster("c"), ray_pod("c", true), ray_pod("c", false)] {
        let decision = evaluate(&object);
        assert!(decision.violations.is_empty(), "{:#?}", decision.violations);
        assert!(decision.patch.0.is_empty());
        assert!(decision.allowed() && decision.allowed_as_is());
    }
}

mod ports {
    use super::*;

    #[test]
    fn a_missing_head_port_is_filled_in() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{HEAD_RAY}/ports/1"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("ports/head-port", format!("{HEAD_RAY}/ports"), true)
        );
        assert!(
            d.violations[0]
                .message
                .contains("add {name: client, containerPort: 10002}")
        );
        assert!(d.allowed() && !d.allowed_as_is());
        let fixed = apply(&c, &d.patch);
        assert!(
            fixed["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "client" && p["containerPort"] == 10002)
        );
        assert!(evaluate(&fixed).violations.is_empty());
    }

    #[test]
    fn a_head_port_on_the_default_number_is_denied_and_not_changed() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0/containerPort"),
            json!(6379),
        );
        let d = evaluate(&c);
        // One finding for one field: not also forbidden-port.
        let rules = rules(&d);
        assert_eq!(rules, ["ports/head-port"]);
        assert!(d.violations.iter().all(|v| !v.fillable));
        assert!(d.violations[0].message.contains("set containerPort: 6380"));
        assert!(d.patch.0.is_empty());
        assert!(!d.allowed());
    }

    #[test]
    fn a_planned_number_under_another_name_must_be_renamed() {
        let mut c = cluster("c");
        set(&mut c, &format!("{HEAD_RAY}/ports/2/name"), json!("dash"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("ports/head-port", format!("{HEAD_RAY}/ports/2/name"), false)
        );
        assert!(
            d.violations[0]
                .message
                .contains("rename it to \"dashboard\"")
        );
    }

    #[test]
    fn a_serve_port_kuberay_ignores_is_only_a_warning() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/3/name"),
            json!("ray-serve"),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/serve-port-name",
                format!("{HEAD_RAY}/ports/3/name"),
                false
            )
        );
        assert_eq!(d.violations[0].action, Action::Warn);
        assert!(d.allowed());
    }

    #[test]
    fn workers_without_a_metrics_port_get_one() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{WORKER_RAY}/ports"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("ports/metrics-port", format!("{WORKER_RAY}/ports"), true)
        );
        assert_eq!(
            serde_json::to_value(&d.patch).unwrap(),
            json!([{"op": "add", "path": format!("{WORKER_RAY}/ports"),
                    "value": [{"name": "metrics", "containerPort": 8081, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn absent_ray_start_params_are_filled_as_one_map() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{WORKER}/rayStartParams"));
        let d = evaluate(&c);
        assert_eq!(
            rules(&d),
            [
                "ports/ray-start-param",
                "ports/ray-start-param",
                "ports/ray-start-param",
                "ports/node-port-range",
                "ports/node-port-range",
                "ports/node-port-range",
                "ports/worker-port-range"
            ]
        );
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed.pointer(&format!("{WORKER}/rayStartParams")).unwrap(),
            &json!({"metrics-export-port": "8081", "object-manager-port": "8301",
                    "node-manager-port": "8401", "runtime-env-agent-port": "8501",
                    "dashboard-agent-grpc-port": "8601", "dashboard-agent-listen-port": "52365",
                    "min-worker-port": "10003", "max-worker-port": "19999"})
        );
        assert!(evaluate(&fixed).violations.is_empty());
    }

    #[test]
    fn a_head_param_on_the_default_is_denied() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD}/rayStartParams/port"),
            json!("6379"),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/ray-start-param",
                format!("{HEAD}/rayStartParams/port"),
                false
            )
        );
        assert!(d.violations[0].message.contains("set it to \"6380\""));
    }

    /// The head as `raygate fix` filled it before the worker range joined the plan: Ray
    /// 2.60.0 and 2.41.0 refuse to start it (`worker_ports is trying to use a port number
    /// 10002 that is used by other components`), since their default range is 10002-19999.
    #[test]
    fn an_unset_worker_range_on_the_head_is_a_fillable_overlap_with_the_client_port() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{HEAD}/rayStartParams/min-worker-port"));
        remove(&mut c, &format!("{HEAD}/rayStartParams/max-worker-port"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/worker-port-overlap",
                format!("{HEAD}/rayStartParams"),
                true
            )
        );
        assert_eq!(d.violations[0].action, Action::Deny);
        let message = &d.violations[0].message;
        assert!(
            message.contains(
                "Ray 2.52.0 (image tag; by 2.52.1's measurement) gives worker processes 10002-19999, which holds planned 10002 (client)"
            ),
            "{message}"
        );
        assert!(
            message.contains("set min-worker-port: \"10003\", max-worker-port: \"19999\""),
            "{message}"
        );
        assert!(d.allowed() && !d.allowed_as_is());
        assert!(evaluate(&apply(&c, &d.patch)).violations.is_empty());
    }

    #[test]
    fn one_unset_bound_is_filled_and_the_other_kept() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{WORKER}/rayStartParams/min-worker-port"),
            json!("15000"),
        );
        remove(&mut c, &format!("{WORKER}/rayStartParams/max-worker-port"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/worker-port-range",
                format!("{WORKER}/rayStartParams"),
                true
            )
        );
        let fixed = apply(&c, &d.patch);
        let params = fixed.pointer(&format!("{WORKER}/rayStartParams")).unwrap();
        assert_eq!(params["min-worker-port"], "15000");
        assert_eq!(params["max-worker-port"], "19999");
    }

    #[test]
    fn a_worker_range_the_user_set_is_judged_never_overwritten() {
        for (group, min, max, rule, path_key) in [
            // Holds the client port: the head does not start.
            (
                HEAD,
                "10002",
                "19999",
                "ports/worker-port-overlap",
                "min-worker-port",
            ),
            // Inside Ray's reach but outside the plan: no NetworkPolicy of the plan admits it.
            (
                WORKER,
                "20000",
                "29999",
                "ports/worker-port-range",
                "min-worker-port",
            ),
            (
                WORKER,
                "10003",
                "25000",
                "ports/worker-port-range",
                "max-worker-port",
            ),
            // Holds the per-node ranges.
            (
                WORKER,
                "8000",
                "9000",
                "ports/worker-port-overlap",
                "min-worker-port",
            ),
            (
                WORKER,
                "15000",
                "12000",
                "ports/worker-port-range",
                "min-worker-port",
            ),
            (
                WORKER,
                "any",
                "19999",
                "ports/worker-port-range",
                "min-worker-port",
            ),
        ] {
            let mut c = cluster("c");
            set(
                &mut c,
                &format!("{group}/rayStartParams/min-worker-port"),
                json!(min),
            );
            set(
                &mut c,
                &format!("{group}/rayStartParams/max-worker-port"),
                json!(max),
            );
            let d = evaluate(&c);
            assert_eq!(
                only(&d),
                (rule, format!("{group}/rayStartParams/{path_key}"), false),
                "{min}-{max}: {:#?}",
                d.violations
            );
            assert!(d.patch.0.is_empty());
            assert!(d.violations[0].message.contains("10003-19999"));
        }
    }

    #[test]
    fn a_worker_port_list_must_stay_inside_the_range() {
        let mut c = cluster("c");
        fn params(c: &mut Value) -> &mut Value {
            c.pointer_mut(&format!("{WORKER}/rayStartParams")).unwrap()
        }
        params(&mut c)["worker-port-list"] = json!("10003,10004");
        assert!(evaluate(&c).violations.is_empty());
        params(&mut c)["worker-port-list"] = json!("10003,8350,x");
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/worker-port-range",
                format!("{WORKER}/rayStartParams/worker-port-list"),
                false
            )
        );
        assert!(
            d.violations[0].message.contains("has 8350 and x"),
            "{}",
            d.violations[0].message
        );
    }

    #[test]
    fn the_dashboard_agent_ports_are_pinned_on_every_node() {
        let mut c = cluster("c");
        remove(
            &mut c,
            &format!("{WORKER}/rayStartParams/dashboard-agent-grpc-port"),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/ray-start-param",
                format!("{WORKER}/rayStartParams"),
                true
            )
        );
        assert!(
            d.violations[0]
                .message
                .contains("(when unset, Ray 2.52.0 (image tag; by 2.52.1's measurement) picks a random port for the dashboard agent's gRPC server); set dashboard-agent-grpc-port: \"8601\""),
            "{}",
            d.violations[0].message
        );
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD}/rayStartParams/dashboard-agent-listen-port"),
            json!("52366"),
        );
        assert_eq!(
            only(&evaluate(&c)),
            (
                "ports/ray-start-param",
                format!("{HEAD}/rayStartParams/dashboard-agent-listen-port"),
                false
            )
        );
    }

    /// The older docs name the GCS port `gcs`: it is the GCS port on the wrong number, never a
    /// reason to add a second one, and one finding names the fix.
    #[test]
    fn a_gcs_port_under_its_older_name_is_recognised() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0"),
            json!({"name": "gcs", "containerPort": 6379}),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/head-port",
                format!("{HEAD_RAY}/ports/0/containerPort"),
                false
            )
        );
        assert!(
            d.violations[0]
                .message
                .contains("set containerPort: 6380 and rename it to \"gcs-server\""),
            "{}",
            d.violations[0].message
        );
        assert!(d.patch.0.is_empty(), "no second GCS port: {:?}", d.patch);
        // On the planned number it only needs the name.
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0/containerPort"),
            json!(6380),
        );
        assert_eq!(
            only(&evaluate(&c)),
            ("ports/head-port", format!("{HEAD_RAY}/ports/0/name"), false)
        );
        // Any name on KubeRay's default number is the planned port on the wrong number.
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0"),
            json!({"name": "redis", "containerPort": 6379}),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/head-port",
                format!("{HEAD_RAY}/ports/0/containerPort"),
                false
            )
        );
        assert!(d.patch.0.is_empty());
    }

    #[test]
    fn a_default_port_on_the_wrong_number_is_reported_once() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/2/containerPort"),
            json!(8265),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/head-port",
                format!("{HEAD_RAY}/ports/2/containerPort"),
                false
            )
        );
        // On another container it is still a forbidden port.
        let pod = c.pointer_mut(HEAD_POD).unwrap();
        pod["containers"].as_array_mut().unwrap().push(
            json!({"name": "side", "ports": [{"containerPort": 8265}],
                   "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}),
        );
        assert_eq!(
            rules(&evaluate(&c)),
            ["ports/head-port", "ports/forbidden-port"]
        );
    }

    fn ray_service(serve_config: &str) -> Value {
        json!({"apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": {"name": "c", "namespace": "kuberay"},
            "spec": {"serveConfigV2": serve_config, "rayClusterConfig": cluster("c")["spec"].clone()}})
    }

    fn serve_findings(serve_config: &str) -> Vec<raygate::rules::Violation> {
        let mut np = network_policy("c");
        let selector = json!({"matchLabels": {"raygate.dev/ray-cr-name": "c"}});
        np["spec"]["podSelector"] = selector.clone();
        np["spec"]["ingress"][0]["from"][0]["podSelector"] = selector;
        evaluate_with(&engine(), &ray_service(serve_config), &[np])
            .violations
            .into_iter()
            .filter(|v| v.rule.as_str() == "ports/serve-config")
            .collect()
    }

    /// Serve listens where `serveConfigV2` says, 8000 by default (Ray 2.60.0), while KubeRay's
    /// Serve Service sends traffic to the planned port: raygate says what to add and never
    /// edits the user's config.
    #[test]
    fn a_rayservices_serve_config_must_listen_on_the_planned_port() {
        let apps = "applications:\n- name: app\n  import_path: app:deployment\n";
        let unset = serve_findings(apps);
        assert_eq!(unset.len(), 1, "{unset:#?}");
        assert_eq!(unset[0].path, "/spec/serveConfigV2");
        assert!(!unset[0].fillable);
        assert!(
            unset[0]
                .message
                .contains("add to serveConfigV2 `http_options: {host: 0.0.0.0, port: 8001}`"),
            "{}",
            unset[0].message
        );
        let wrong = serve_findings(&format!("http_options:\n  port: 8000\n{apps}"));
        assert!(
            wrong[0].message.contains("sets http_options.port: 8000"),
            "{}",
            wrong[0].message
        );
        assert!(
            serve_findings(&format!(
                "http_options:\n  host: 0.0.0.0\n  port: 8001\n{apps}"
            ))
            .is_empty()
        );
        // A gRPC proxy on a planned port clashes, and Serve's default 9000 is off the plan
        // unless the policy allows it.
        let grpc = |port: &str| {
            serve_findings(&format!(
                "http_options: {{port: 8001}}\ngrpc_options: {{{port}grpc_servicer_functions: [a.b]}}\n{apps}"
            ))
        };
        let default = grpc("");
        assert!(
            default[0]
                .message
                .contains("listens on 9000, which is not on the port plan"),
            "{default:#?}"
        );
        let clash = grpc("port: 8301, ");
        assert!(
            clash[0].message.contains("8301-8400 (object-manager-port)"),
            "{}",
            clash[0].message
        );
        let broken = serve_findings("applications: [");
        assert!(broken[0].message.contains("not valid YAML"));
    }

    /// A container that runs its own `ray start` (KubeRay then ignores rayStartParams): its
    /// flags are judged, and nothing is filled into rayStartParams, where it would do nothing.
    #[test]
    fn ports_on_the_containers_own_command_line_are_judged() {
        let mut c = cluster("c");
        c["metadata"]["annotations"] = json!({"ray.io/overwrite-container-cmd": "true"});
        remove(&mut c, &format!("{HEAD}/rayStartParams"));
        let args = "ulimit -n 65536; ray start --head --block --port=6379 --ray-client-server-port=10002 \
            --dashboard-port 8266 --metrics-export-port=8081 --dashboard-agent-grpc-port=8601 \
            --dashboard-agent-listen-port=52365 --object-manager-port=8301 --node-manager-port=8401 \
            --runtime-env-agent-port=8501 --min-worker-port=10003 --max-worker-port=19999";
        let ray = c.pointer_mut(HEAD_RAY).unwrap();
        ray["command"] = json!(["/bin/bash", "-c", "--"]);
        ray["args"] = json!([args]);
        // The annotation covers every group: a worker without a command of its own would run
        // its image's entrypoint, which raygate cannot see.
        let d = evaluate(&c);
        assert!(
            d.violations
                .iter()
                .any(|v| v.rule.as_str() == "ports/start-command"
                    && v.path == "/spec/workerGroupSpecs/0/template/spec/containers/0"
                    && v.message.contains("image's entrypoint"))
        );
        c.pointer_mut("/spec/workerGroupSpecs/0/template/spec/containers/0")
            .unwrap()["command"] = json!(["/bin/bash", "-c", "$KUBERAY_GEN_RAY_START_CMD"]);
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("ports/ray-start-param", format!("{HEAD_RAY}/args"), false)
        );
        assert!(
            d.violations[0]
                .message
                .contains("it sets --port=6379: use --port=6380"),
            "{}",
            d.violations[0].message
        );
        assert!(d.patch.0.is_empty());
        // Running KubeRay's generated command keeps rayStartParams in force.
        c.pointer_mut(HEAD_RAY).unwrap()["args"] =
            json!(["ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD"]);
        let d = evaluate(&c);
        assert!(
            d.violations
                .iter()
                .all(|v| v.path == format!("{HEAD}/rayStartParams"))
        );
        assert!(!d.patch.0.is_empty());
    }

    /// The head's metrics for Prometheus (autoscaler 44217, dashboard 44227 in Ray 2.60.0)
    /// are planned at Ray's defaults; an environment variable that moves one is denied.
    #[test]
    fn a_head_port_moved_by_its_environment_variable_is_denied() {
        let mut c = cluster("c");
        c.pointer_mut(HEAD_RAY).unwrap()["env"] = json!([
            {"name": "AUTOSCALER_METRIC_PORT", "value": "44217"},
            {"name": "DASHBOARD_METRIC_PORT", "value": "9999"}
        ]);
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("ports/head-port", format!("{HEAD_RAY}/env/1/value"), false)
        );
        assert!(
            d.violations[0]
                .message
                .contains("dash-metrics port off the plan's 44227")
        );
    }

    #[test]
    fn a_node_port_outside_its_range_is_denied() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{WORKER}/rayStartParams/node-manager-port"),
            json!("9000"),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/node-port-range",
                format!("{WORKER}/rayStartParams/node-manager-port"),
                false
            )
        );
        assert!(d.violations[0].message.contains("8401-8500"));
    }

    #[test]
    fn a_worker_port_range_over_the_plan_is_denied() {
        let mut c = cluster("c");
        let params = c.pointer_mut(&format!("{WORKER}/rayStartParams")).unwrap();
        params["min-worker-port"] = json!("8000");
        params["max-worker-port"] = json!("8350");
        let d = evaluate(&c);
        let (rule, _, fillable) = only(&d);
        assert_eq!((rule, fillable), ("ports/worker-port-overlap", false));
        assert!(d.violations[0].message.contains("8081 (metrics)"));
        assert!(
            d.violations[0]
                .message
                .contains("8301-8400 (object-manager-port)")
        );
    }

    #[test]
    fn forbidden_ports_are_denied_in_sidecars_and_init_containers() {
        let mut c = cluster("c");
        let pod = c.pointer_mut(WORKER_POD).unwrap();
        let mut sidecar = ray_container("redis", false);
        sidecar["ports"] = json!([{"name": "redis", "containerPort": 6379}]);
        pod["initContainers"] = json!([sidecar]);
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "ports/forbidden-port",
                format!("{WORKER_POD}/initContainers/0/ports/0/containerPort"),
                false
            )
        );
    }

    #[test]
    fn a_ray_pod_on_a_default_port_is_denied() {
        let mut p = ray_pod("c", false);
        set(
            &mut p,
            "/spec/containers/0/ports/0/containerPort",
            json!(8080),
        );
        let d = evaluate(&p);
        assert_eq!(rules(&d), ["ports/forbidden-port"]);
        assert!(!d.allowed());
    }

    fn probe_findings(d: &raygate::Decision) -> Vec<(&'static str, String, bool)> {
        findings_of(d, "ports/probe-port")
    }

    /// Without probes KubeRay v1.5.0 adds exec probes on the dashboard's 8265 and the agent's
    /// 52365: on the plan's 8266 the head is never Ready. raygate fills in KubeRay's own probes
    /// on the ports the patched cluster has; a worker's (52365 only) are right as KubeRay
    /// writes them.
    #[test]
    fn missing_probes_are_filled_in_as_kuberay_writes_them_on_the_plans_ports() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{HEAD_RAY}/readinessProbe"));
        remove(&mut c, &format!("{HEAD_RAY}/livenessProbe"));
        // The dashboard port itself is filled in by the same admission.
        remove(&mut c, &format!("{HEAD}/rayStartParams/dashboard-port"));
        let d = evaluate(&c);
        assert_eq!(
            probe_findings(&d),
            [
                (
                    "ports/probe-port",
                    format!("{HEAD_RAY}/readinessProbe"),
                    true
                ),
                (
                    "ports/probe-port",
                    format!("{HEAD_RAY}/livenessProbe"),
                    true
                ),
            ]
        );
        let message = &d
            .violations
            .iter()
            .find(|v| v.rule.as_str() == "ports/probe-port")
            .unwrap()
            .message;
        assert!(
            message.contains("calls localhost:8265 (dashboard)")
                && message.contains("the dashboard on 8266")
                && message
                    .contains("never becomes Ready and KubeRay never marks the cluster ready"),
            "{message}"
        );
        assert!(d.allowed() && !d.allowed_as_is());
        let fixed = apply(&c, &d.patch);
        assert_eq!(fixed.pointer(HEAD_RAY), cluster("c").pointer(HEAD_RAY));
        assert_eq!(
            fixed.pointer(&format!("{HEAD}/rayStartParams/dashboard-port")),
            Some(&json!("8266"))
        );
        let worker = fixed.pointer(WORKER_RAY).unwrap();
        assert!(worker.get("readinessProbe").is_none() && worker.get("livenessProbe").is_none());
        let again = evaluate(&fixed);
        assert!(again.violations.is_empty(), "{:#?}", again.violations);
        assert!(again.patch.0.is_empty());

        // A probe the user set stays; only the missing one is filled.
        let mut c = cluster("c");
        remove(&mut c, &format!("{HEAD_RAY}/livenessProbe"));
        let d = evaluate(&c);
        assert_eq!(
            probe_findings(&d),
            [(
                "ports/probe-port",
                format!("{HEAD_RAY}/livenessProbe"),
                true
            )]
        );
        assert_eq!(apply(&c, &d.patch), cluster("c"));
    }

    /// A worker whose agent listens off KubeRay's 52365 gets both probes; an embedded cluster
    /// spec (RayJob) is filled in where it sits.
    #[test]
    fn a_worker_probe_follows_the_agent_port_in_every_kind() {
        let policy = Policy::from_yaml(
            &raygate::policy::BUILT_IN_POLICY.replace(
                "port: 52365, rayStartParam: dashboard-agent-listen-port",
                "port: 52366, rayStartParam: dashboard-agent-listen-port",
            ),
            "p.yaml",
        )
        .unwrap();
        let engine = raygate::engine::Engine::new(policy);
        let mut c = cluster("c");
        for group in [HEAD, WORKER] {
            set(
                &mut c,
                &format!("{group}/rayStartParams/dashboard-agent-listen-port"),
                json!("52366"),
            );
        }
        remove(&mut c, &format!("{HEAD_RAY}/readinessProbe"));
        remove(&mut c, &format!("{HEAD_RAY}/livenessProbe"));
        let job = json!({"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "c", "namespace": "kuberay"},
            "spec": {"entrypoint": "python -V", "rayClusterSpec": c["spec"].clone()}});
        for (object, spec) in [(&c, "/spec"), (&job, "/spec/rayClusterSpec")] {
            let d = evaluate_with(&engine, object, &[network_policy("c")]);
            let filled: Vec<(String, String)> = d
                .patch
                .0
                .iter()
                .filter_map(|op| match op {
                    json_patch::PatchOperation::Add(add)
                        if add.path.as_str().ends_with("Probe") =>
                    {
                        Some((
                            add.path.to_string(),
                            add.value["exec"]["command"][2].as_str().unwrap().to_owned(),
                        ))
                    }
                    _ => None,
                })
                .collect();
            let head = "wget --tries 1 -T 2 -q -O- http://localhost:52366/api/local_raylet_healthz | grep success && wget --tries 1 -T 10 -q -O- http://localhost:8266/api/gcs_healthz | grep success";
            let worker = "wget --tries 1 -T 2 -q -O- http://localhost:52366/api/local_raylet_healthz | grep success";
            let at = |group: &str, probe: &str| {
                format!("{spec}/{group}/template/spec/containers/0/{probe}")
            };
            assert_eq!(
                filled,
                [
                    (at("headGroupSpec", "readinessProbe"), head.to_owned()),
                    (at("headGroupSpec", "livenessProbe"), head.to_owned()),
                    (
                        at("workerGroupSpecs/0", "readinessProbe"),
                        worker.to_owned()
                    ),
                    (at("workerGroupSpecs/0", "livenessProbe"), worker.to_owned()),
                ],
                "{spec}"
            );
            let worker_probe = d
                .patch
                .0
                .iter()
                .find_map(|op| match op {
                    json_patch::PatchOperation::Add(add)
                        if add.path.as_str() == at("workerGroupSpecs/0", "livenessProbe") =>
                    {
                        Some(add.value.clone())
                    }
                    _ => None,
                })
                .unwrap();
            assert_eq!(
                worker_probe,
                json!({"exec": {"command": ["bash", "-c", worker]}, "initialDelaySeconds": 30,
                    "timeoutSeconds": 2, "periodSeconds": 5, "successThreshold": 1,
                    "failureThreshold": 120})
            );
        }
    }

    /// A RayService worker's readiness probe from KubeRay also checks Serve's proxy, on the
    /// `serve` port the worker declares, else 8000, while Serve listens on the plan's 8001.
    #[test]
    fn a_rayservice_worker_gets_kuberays_serve_check_on_the_serve_port() {
        let apps = "http_options: {host: 0.0.0.0, port: 8001}\napplications: []\n";
        let service = ray_service(apps);
        let d = evaluate_with(&engine(), &service, &[network_policy("c")]);
        let worker = "/spec/rayClusterConfig/workerGroupSpecs/0/template/spec/containers/0";
        assert_eq!(
            probe_findings(&d),
            [("ports/probe-port", format!("{worker}/readinessProbe"), true)]
        );
        let fixed = apply(&service, &d.patch);
        assert_eq!(
            fixed.pointer(&format!("{worker}/readinessProbe")).unwrap(),
            &json!({"exec": {"command": ["bash", "-c", "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && wget --tries 1 -T 10 -q -O- http://localhost:8001/-/healthz | grep success"]},
                "initialDelaySeconds": 10, "timeoutSeconds": 2, "periodSeconds": 5,
                "successThreshold": 1, "failureThreshold": 1})
        );
        // Declaring the Serve port on the worker makes KubeRay's own probe right.
        let mut declared = service.clone();
        declared
            .pointer_mut(&format!("{worker}/ports"))
            .unwrap()
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "serve", "containerPort": 8001}));
        let d = evaluate_with(&engine(), &declared, &[network_policy("c")]);
        assert!(probe_findings(&d).is_empty(), "{:#?}", d.violations);
    }

    /// A probe the user wrote that calls a default Ray does not listen on is denied with the
    /// port to use, never rewritten.
    #[test]
    fn a_users_probe_on_a_default_ray_does_not_listen_on_is_denied() {
        let mut c = cluster("c");
        let kuberays = head_probe_command().replace("8266", "8265");
        set(
            &mut c,
            &format!("{HEAD_RAY}/readinessProbe/exec/command/2"),
            json!(kuberays),
        );
        c.pointer_mut(HEAD_RAY).unwrap()["livenessProbe"] =
            json!({"httpGet": {"path": "/api/gcs_healthz", "port": 8265}, "periodSeconds": 5});
        let d = evaluate(&c);
        assert_eq!(
            probe_findings(&d),
            [
                (
                    "ports/probe-port",
                    format!("{HEAD_RAY}/readinessProbe/exec/command/2"),
                    false
                ),
                (
                    "ports/probe-port",
                    format!("{HEAD_RAY}/livenessProbe/httpGet/port"),
                    false
                ),
            ]
        );
        assert!(
            d.violations[0]
                .message
                .contains("calls localhost:8265/api/gcs_healthz for the dashboard, which listens on 8266: use 8266"),
            "{}",
            d.violations[0].message
        );
        assert!(d.patch.0.is_empty() && !d.allowed());
        // The agent's endpoint on the dashboard's port is as wrong, and a named port counts.
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/readinessProbe/exec/command/2"),
            json!("curl -sf http://127.0.0.1:8266/api/local_raylet_healthz"),
        );
        c.pointer_mut(HEAD_RAY).unwrap()["livenessProbe"] =
            json!({"httpGet": {"path": "/api/gcs_healthz", "port": "dashboard"}});
        let d = evaluate(&c);
        assert_eq!(
            probe_findings(&d),
            [(
                "ports/probe-port",
                format!("{HEAD_RAY}/readinessProbe/exec/command/2"),
                false
            )]
        );
        assert!(d.violations[0].message.contains("use 52365"));
        // A worker runs no dashboard.
        let mut c = cluster("c");
        c.pointer_mut(WORKER_RAY).unwrap()["readinessProbe"] = json!({"tcpSocket": {"port": 8265}});
        let d = evaluate(&c);
        assert_eq!(
            probe_findings(&d),
            [(
                "ports/probe-port",
                format!("{WORKER_RAY}/readinessProbe/tcpSocket/port"),
                false
            )]
        );
        assert!(
            d.violations[0]
                .message
                .contains("a worker runs no dashboard")
        );
    }

    /// A Pod whose template had no probes carries KubeRay's, on 8265: denied (an audited
    /// namespace, a cluster raygate did not fill in), with the port its Ray listens on.
    #[test]
    fn a_pod_with_kuberays_generated_probes_on_8265_is_denied() {
        let mut pod = kuberay_pod("c", true, &head_start(6380));
        let ray = &mut pod["spec"]["containers"][0];
        let generated = head_probe_command().replace("8266", "8265");
        ray["readinessProbe"]["exec"]["command"][2] = json!(generated);
        ray["livenessProbe"]["exec"]["command"][2] = json!(generated);
        let d = evaluate(&pod);
        assert_eq!(
            probe_findings(&d),
            [
                (
                    "ports/probe-port",
                    "/spec/containers/0/readinessProbe/exec/command/2".to_owned(),
                    false
                ),
                (
                    "ports/probe-port",
                    "/spec/containers/0/livenessProbe/exec/command/2".to_owned(),
                    false
                ),
            ]
        );
        assert_eq!(d.violations.len(), 2, "{:#?}", d.violations);
        assert!(d.violations[0].message.contains("use 8266"));
        assert!(!d.allowed());
        // The same probes on a head started on 8265 are right.
        let start = head_start(6380).replace("--dashboard-port=8266", "--dashboard-port=8265");
        let mut pod = kuberay_pod("c", true, &start);
        for probe in ["readinessProbe", "livenessProbe"] {
            pod["spec"]["containers"][0][probe]["exec"]["command"][2] = json!(generated);
        }
        assert!(probe_findings(&evaluate(&pod)).is_empty());
        // Probes on the right ports pass.
        let d = evaluate(&kuberay_pod("c", true, &head_start(6380)));
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    fn autoscaler_findings(d: &raygate::Decision) -> Vec<(&'static str, String, bool)> {
        findings_of(d, "ports/autoscaler-gcs-port")
    }

    /// KubeRay v1.5.0 starts the autoscaler with no GCS address, so Ray looks for GCS at 6379:
    /// the head Pod's autoscaler is told the head's port.
    #[test]
    fn the_autoscaler_of_a_head_pod_is_told_the_gcs_port() {
        let pod = autoscaling_head_pod("c", 6380, "rayproject/ray:2.60.0");
        let d = evaluate(&pod);
        assert_eq!(
            autoscaler_findings(&d),
            [(
                "ports/autoscaler-gcs-port",
                "/spec/containers/1/args/0".to_owned(),
                true
            )]
        );
        assert_eq!(d.violations.len(), 1, "{:#?}", d.violations);
        assert!(d.allowed() && !d.allowed_as_is());
        assert!(
            d.violations[0]
                .message
                .contains("append `--gcs-address=127.0.0.1:6380`"),
            "{}",
            d.violations[0].message
        );
        let fixed = apply(&pod, &d.patch);
        assert_eq!(
            fixed["spec"]["containers"][1]["args"],
            json!([
                "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE) --gcs-address=127.0.0.1:6380"
            ])
        );
        // Nothing else of the Pod changes, and filling in twice changes nothing.
        let mut expected = pod.clone();
        expected["spec"]["containers"][1]["args"] = fixed["spec"]["containers"][1]["args"].clone();
        assert_eq!(fixed, expected);
        let again = evaluate(&fixed);
        assert!(again.violations.is_empty() && again.patch.0.is_empty());
        // An image raygate cannot date (a tag of its own) is told too.
        let d = evaluate(&autoscaling_head_pod(
            "c",
            6380,
            "registry.local/ray:custom",
        ));
        assert_eq!(autoscaler_findings(&d).len(), 1);
        assert!(d.violations[0].fillable);
    }

    #[test]
    fn an_autoscaler_before_ray_2_60_is_denied() {
        let pod = autoscaling_head_pod("c", 6380, "rayproject/ray:2.52.0");
        let d = evaluate(&pod);
        assert_eq!(
            autoscaler_findings(&d),
            [(
                "ports/autoscaler-gcs-port",
                "/spec/containers/1/image".to_owned(),
                false
            )]
        );
        let message = &d.violations[0].message;
        assert!(
            message.contains("Ray 2.52.0")
                && message.contains("connects to GCS at 6379")
                && message.contains("autoscalerOptions.image"),
            "{message}"
        );
        assert!(d.patch.0.is_empty() && !d.allowed());

        // The cluster is denied at apply already: its autoscaler image is the head's.
        let mut c = cluster("c");
        c["spec"]["enableInTreeAutoscaling"] = json!(true);
        let d = evaluate(&c);
        assert_eq!(
            autoscaler_findings(&d),
            [(
                "ports/autoscaler-gcs-port",
                format!("{HEAD_RAY}/image"),
                false
            )]
        );
        assert!(
            d.violations[0]
                .message
                .contains("set autoscalerOptions.image")
        );
        // autoscalerOptions.image decides when set.
        c["spec"]["autoscalerOptions"] = json!({"image": "rayproject/ray-ml:2.41.0-py311"});
        assert_eq!(
            autoscaler_findings(&evaluate(&c)),
            [(
                "ports/autoscaler-gcs-port",
                "/spec/autoscalerOptions/image".to_owned(),
                false
            )]
        );
        c["spec"]["autoscalerOptions"] = json!({"image": "docker.io/rayproject/ray:2.60.0-py311"});
        assert!(autoscaler_findings(&evaluate(&c)).is_empty());
        // An image raygate cannot date leaves rayVersion to tell.
        c["spec"]["autoscalerOptions"] = json!({"image": "registry.local/ray:custom"});
        assert_eq!(
            autoscaler_findings(&evaluate(&c)),
            [(
                "ports/autoscaler-gcs-port",
                "/spec/rayVersion".to_owned(),
                false
            )]
        );
        c["spec"]["rayVersion"] = json!("2.60.0");
        assert!(autoscaler_findings(&evaluate(&c)).is_empty());
    }

    /// On KubeRay's own GCS port 6379 the autoscaler finds GCS unaided: nothing to tell.
    #[test]
    fn an_autoscaler_with_gcs_on_6379_is_left_alone() {
        for image in ["rayproject/ray:2.60.0", "rayproject/ray:2.52.0"] {
            let pod = autoscaling_head_pod("c", 6379, image);
            assert!(autoscaler_findings(&evaluate(&pod)).is_empty(), "{image}");
            // No --port at all is Ray's 6379 too.
            let mut pod = pod;
            let args = &mut pod["spec"]["containers"][0]["args"][0];
            *args = json!(args.as_str().unwrap().replace("--port=6379", ""));
            assert!(autoscaler_findings(&evaluate(&pod)).is_empty(), "{image}");
        }
        let policy = Policy::from_yaml(
            &raygate::policy::BUILT_IN_POLICY
                .replace(
                    "port: 6380, rayStartParam: port",
                    "port: 6379, rayStartParam: port",
                )
                .replace("forbidden: [6379, ", "forbidden: ["),
            "p.yaml",
        )
        .unwrap();
        let engine = raygate::engine::Engine::new(policy);
        let mut c = cluster("c");
        c["spec"]["enableInTreeAutoscaling"] = json!(true);
        set(
            &mut c,
            &format!("{HEAD}/rayStartParams/port"),
            json!("6379"),
        );
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0/containerPort"),
            json!(6379),
        );
        let d = evaluate_with(&engine, &c, &[network_policy("c")]);
        assert!(autoscaler_findings(&d).is_empty(), "{:#?}", d.violations);
        // A worker Pod has no autoscaler; its start names no GCS port of its own.
        let worker = kuberay_pod(
            "c",
            false,
            "ray start  --address=c-head-svc.kuberay.svc.cluster.local:6380  --block  --dashboard-agent-grpc-port=8601  --dashboard-agent-listen-port=52365  --metrics-export-port=8081 ",
        );
        assert!(autoscaler_findings(&evaluate(&worker)).is_empty());
    }

    #[test]
    fn ray_versions_are_read_from_rayproject_image_tags() {
        use raygate::ray_version::{RayVersion, image_version};
        for (image, version) in [
            ("rayproject/ray:2.52.0", Some(RayVersion(2, 52, 0))),
            (
                "rayproject/ray:2.60.0-py311-gpu",
                Some(RayVersion(2, 60, 0)),
            ),
            (
                "docker.io/rayproject/ray-ml:2.9.3",
                Some(RayVersion(2, 9, 3)),
            ),
            (
                "quay.io/rayproject/ray:2.41.0@sha256:abc",
                Some(RayVersion(2, 41, 0)),
            ),
            (
                "localhost:5000/mirror/rayproject/ray:2.10.0.abc123-py310",
                Some(RayVersion(2, 10, 0)),
            ),
            ("rayproject/ray:latest", None),
            ("rayproject/ray:nightly-py311", None),
            ("rayproject/ray", None),
            ("localhost:5000/rayproject/ray", None),
            ("example/rayproject-ray:2.52.0", None),
            ("notrayproject/ray:2.52.0", None),
            ("rayproject/ray:2.52", None),
            ("rayproject/ray:2.52.0rc1", None),
        ] {
            assert_eq!(image_version(image), version, "{image}");
        }
        assert!(RayVersion(2, 59, 9) < RayVersion(2, 60, 0));
        assert!(RayVersion(2, 100, 0) > RayVersion(2, 60, 0));
    }
}

mod placement {
    use super::*;

    #[test]
    fn an_unconstrained_group_is_pinned_to_workers() {
        let mut c = cluster("c");
        remove(&mut c, &format!("{WORKER_POD}/nodeSelector"));
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "placement/not-pinned-to-workers",
                WORKER_POD.to_owned(),
                true
            )
        );
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed
                .pointer(&format!("{WORKER_POD}/nodeSelector"))
                .unwrap(),
            &json!({"node-role": "worker"})
        );
    }

    #[test]
    fn node_name_on_the_master_is_denied() {
        let mut p = ray_pod("c", false);
        p["spec"]["nodeName"] = json!("gpu-node");
        let d = evaluate(&p);
        assert_eq!(
            only(&d),
            ("placement/node-name", "/spec/nodeName".into(), false)
        );
    }

    #[test]
    fn a_selector_for_the_master_is_denied_not_overwritten() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{WORKER_POD}/nodeSelector"),
            json!({"kubernetes.io/hostname": "gpu-node"}),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "placement/targets-master",
                format!("{WORKER_POD}/nodeSelector/kubernetes.io~1hostname"),
                false
            )
        );
        assert!(d.patch.0.is_empty());
    }

    #[test]
    fn tolerating_the_control_plane_taint_is_denied() {
        for toleration in [
            json!({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"key": "node-role.kubernetes.io/master", "operator": "Exists"}),
            json!({"operator": "Exists"}),
        ] {
            let mut c = cluster("c");
            c.pointer_mut(WORKER_POD).unwrap()["tolerations"] = json!([toleration]);
            let d = evaluate(&c);
            assert_eq!(
                only(&d),
                (
                    "placement/tolerates-control-plane",
                    format!("{WORKER_POD}/tolerations/0"),
                    false
                ),
                "{toleration}"
            );
        }
    }

    fn with_required_terms(terms: Value) -> Value {
        let mut c = cluster("c");
        let pod = c.pointer_mut(WORKER_POD).unwrap();
        pod.as_object_mut().unwrap().remove("nodeSelector");
        pod["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}});
        c
    }

    #[test]
    fn affinity_terms_keep_off_masters_only_if_every_term_does() {
        let worker = json!({"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["worker"]}]});
        let not_master = json!({"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["gpu-node"]}]});
        let no_cp = json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]});
        let zone = json!({"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]});

        let d = evaluate(&with_required_terms(json!([worker.clone()])));
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        // Only the worker label pins a pod: keeping off today's master by name, or off nodes
        // with the control-plane label, still admits any unlabelled node.
        for terms in [
            json!([not_master]),
            json!([no_cp]),
            json!([worker.clone(), not_master]),
        ] {
            let d = evaluate(&with_required_terms(terms.clone()));
            assert_eq!(
                only(&d),
                (
                    "placement/not-pinned-to-workers",
                    WORKER_POD.to_owned(),
                    false
                ),
                "{terms}"
            );
        }
        // Terms are ORed: one term that allows the master lets the pod onto it.
        let d = evaluate(&with_required_terms(json!([worker, zone])));
        assert_eq!(
            only(&d),
            (
                "placement/not-pinned-to-workers",
                WORKER_POD.to_owned(),
                false
            )
        );
    }

    #[test]
    fn affinity_for_the_master_is_denied() {
        let d = evaluate(&with_required_terms(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["gpu-node"]}]}])));
        assert_eq!(
            only(&d),
            (
                "placement/targets-master",
                format!(
                    "{WORKER_POD}/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0"
                ),
                false
            )
        );
    }

    /// The worker group, asking for one GPU, with the fields of `placement` (nodeName,
    /// nodeSelector, affinity, tolerations) in its template spec instead of the builder's
    /// nodeSelector.
    fn gpu_group(placement: Value) -> Value {
        let mut c = cluster("c");
        let pod = c.pointer_mut(WORKER_POD).unwrap();
        pod.as_object_mut().unwrap().remove("nodeSelector");
        for (key, value) in placement.as_object().unwrap() {
            pod[key] = value.clone();
        }
        let resources = &mut pod["containers"][0]["resources"];
        resources["requests"]["nvidia.com/gpu"] = json!(1);
        resources["limits"]["nvidia.com/gpu"] = json!(1);
        c
    }

    fn master_toleration() -> Value {
        json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])
    }

    #[test]
    fn a_gpu_group_may_run_on_the_master() {
        for placement in [
            json!({"nodeSelector": {"kubernetes.io/hostname": "gpu-node"}}),
            json!({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}),
            json!({"nodeName": "gpu-node"}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["gpu-node"]}]}]}}}}),
        ] {
            let mut with_toleration = placement.clone();
            with_toleration["tolerations"] = master_toleration();
            for placement in [placement, with_toleration] {
                let d = evaluate(&gpu_group(placement.clone()));
                assert!(d.violations.is_empty(), "{placement}: {:#?}", d.violations);
                assert!(d.patch.0.is_empty(), "{placement}");
            }
        }
    }

    #[test]
    fn a_gpu_group_pinned_to_the_workers_is_admitted() {
        let worker_term = json!({"matchExpressions": [
            {"key": "node-role", "operator": "In", "values": ["worker"]}]});
        let master_term = json!({"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-node"]}]});
        for placement in [
            json!({"nodeSelector": {"node-role": "worker"}}),
            json!({"nodeSelector": {"node-role": "worker"}, "tolerations": master_toleration()}),
            // Every term keeps it on workers or on masters: the shape raygate fills in.
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [worker_term, master_term]}}}}),
        ] {
            let d = evaluate(&gpu_group(placement.clone()));
            assert!(d.violations.is_empty(), "{placement}: {:#?}", d.violations);
            assert!(d.patch.0.is_empty(), "{placement}");
        }
    }

    #[test]
    fn a_gpu_group_bound_to_a_node_that_is_not_a_master_is_denied() {
        // A kubelet drops an extended resource its node does not have: bound to a node
        // without GPUs that is neither a worker nor a master, the Pod runs there.
        for node in ["edge-1", "worker-2"] {
            let d = evaluate(&gpu_group(json!({"nodeName": node})));
            assert_eq!(
                only(&d),
                (
                    "placement/not-pinned-to-workers",
                    WORKER_POD.to_owned(),
                    false
                ),
                "{node}"
            );
            let message = &d.violations[0].message;
            assert!(
                message.contains(&format!("sets nodeName: {node}, not a master"))
                    && message.contains("remove nodeName, set it to a master (gpu-node)")
                    && message.contains(&format!(
                        "add node-role: worker to its nodeSelector if {node} is a worker"
                    )),
                "{message}"
            );
            assert!(d.patch.0.is_empty() && !d.allowed());
        }
        // The worker label keeps it on a worker (or nowhere): admitted.
        let d = evaluate(&gpu_group(
            json!({"nodeName": "worker-2", "nodeSelector": {"node-role": "worker"}}),
        ));
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    #[test]
    fn a_gpu_group_selecting_other_nodes_is_denied_and_not_changed() {
        for placement in [
            json!({"nodeSelector": {"disktype": "ssd"}}),
            json!({"nodeSelector": {"nvidia.com/gpu.present": "true"}, "tolerations": master_toleration()}),
            json!({"nodeSelector": {"kubernetes.io/hostname": "edge-1"}}),
            // Terms are ORed: a master among other names, or a term for any node, widens it.
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname",
                    "operator": "In", "values": ["worker-1", "gpu-node"]}]}]}}}}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["worker"]}]},
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]},
            ]}}}}),
        ] {
            let c = gpu_group(placement.clone());
            let d = evaluate(&c);
            assert_eq!(
                only(&d),
                (
                    "placement/not-pinned-to-workers",
                    WORKER_POD.to_owned(),
                    false
                ),
                "{placement}"
            );
            let message = &d.violations[0].message;
            assert!(
                message.contains("neither on workers nor on masters")
                    && message.contains("add node-role: worker to its nodeSelector")
                    && message.contains("select a master with kubernetes.io/hostname: gpu-node"),
                "{message}"
            );
            // The user's selector and terms are theirs: nothing is filled beside them.
            assert!(d.patch.0.is_empty() && !d.allowed(), "{placement}");
        }
    }

    #[test]
    fn an_unconstrained_gpu_group_is_pinned_to_workers_or_masters() {
        let terms = json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["worker"]}]},
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-node"]}]},
        ]});
        let preferred = json!([{"weight": 1, "preference": {"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}}]);
        let anti = json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}]});
        for (placement, filled_at) in [
            (json!({}), "/affinity"),
            (
                json!({"nodeSelector": {}, "tolerations": master_toleration()}),
                "/affinity",
            ),
            (
                json!({"affinity": {"podAntiAffinity": anti}}),
                "/affinity/nodeAffinity",
            ),
            (
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}}),
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
            ),
        ] {
            let c = gpu_group(placement.clone());
            let d = evaluate(&c);
            assert_eq!(
                only(&d),
                (
                    "placement/not-pinned-to-workers",
                    WORKER_POD.to_owned(),
                    true
                ),
                "{placement}"
            );
            assert!(
                d.violations[0].message.contains(
                    "add the required node affinity terms node-role In [worker] or kubernetes.io/hostname In [gpu-node]"
                ),
                "{}",
                d.violations[0].message
            );
            assert!(d.allowed() && !d.allowed_as_is());
            // One add, of the outermost missing field: the rest of the user's affinity is
            // left as it was.
            let ops = serde_json::to_value(&d.patch).unwrap();
            assert_eq!(ops.as_array().unwrap().len(), 1, "{placement}");
            assert_eq!(ops[0]["op"], "add");
            assert_eq!(ops[0]["path"], format!("{WORKER_POD}{filled_at}"));
            let fixed = apply(&c, &d.patch);
            let pod = fixed.pointer(WORKER_POD).unwrap();
            assert_eq!(
                pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
                terms,
                "{placement}"
            );
            let mut unfilled = pod.clone();
            let node_affinity = unfilled["affinity"]["nodeAffinity"]
                .as_object_mut()
                .unwrap();
            node_affinity.remove("requiredDuringSchedulingIgnoredDuringExecution");
            if node_affinity.is_empty() {
                unfilled["affinity"]
                    .as_object_mut()
                    .unwrap()
                    .remove("nodeAffinity");
            }
            if unfilled["affinity"].as_object().unwrap().is_empty() {
                unfilled.as_object_mut().unwrap().remove("affinity");
            }
            assert_eq!(&unfilled, c.pointer(WORKER_POD).unwrap(), "{placement}");
            // Not the worker label: that would shut the group out of the master.
            assert!(
                pod["nodeSelector"].get("node-role").is_none(),
                "{placement}"
            );
            assert!(evaluate(&fixed).violations.is_empty(), "{placement}");
        }
    }

    #[test]
    fn without_named_masters_a_gpu_group_may_use_control_plane_nodes() {
        let text = raygate::policy::BUILT_IN_POLICY
            .replace("masterHostnames: [gpu-node]", "masterHostnames: []");
        assert_ne!(text, raygate::policy::BUILT_IN_POLICY);
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let c = gpu_group(json!({}));
        let d = evaluate_with(&engine, &c, &[network_policy("c")]);
        assert!(only(&d).2, "fillable");
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed.pointer(&format!("{WORKER_POD}/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1")).unwrap(),
            &json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]})
        );
        assert!(
            evaluate_with(&engine, &fixed, &[network_policy("c")])
                .violations
                .is_empty()
        );
        let d = evaluate_with(
            &engine,
            &gpu_group(json!({"nodeSelector": {"disktype": "ssd"}})),
            &[network_policy("c")],
        );
        assert!(
            d.violations[0]
                .message
                .contains("select a master with node-role.kubernetes.io/control-plane: \"\""),
            "{}",
            d.violations[0].message
        );
    }

    #[test]
    fn with_the_exception_off_a_gpu_group_is_pinned_to_workers() {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "gpuGroupsMayUseMasters: true",
            "gpuGroupsMayUseMasters: false",
        );
        assert_ne!(text, raygate::policy::BUILT_IN_POLICY);
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let c = gpu_group(json!({}));
        let d = evaluate_with(&engine, &c, &[network_policy("c")]);
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed
                .pointer(&format!("{WORKER_POD}/nodeSelector"))
                .unwrap(),
            &json!({"node-role": "worker"})
        );
        let d = evaluate_with(
            &engine,
            &gpu_group(json!({"nodeName": "gpu-node"})),
            &[network_policy("c")],
        );
        assert_eq!(rules(&d), ["placement/node-name"]);
    }

    #[test]
    fn a_gpu_head_gets_no_exception() {
        let mut c = cluster("c");
        let pod = c.pointer_mut(HEAD_POD).unwrap();
        pod.as_object_mut().unwrap().remove("nodeSelector");
        let resources = &mut pod["containers"][0]["resources"];
        resources["requests"]["nvidia.com/gpu"] = json!(1);
        resources["limits"]["nvidia.com/gpu"] = json!(1);
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            ("placement/not-pinned-to-workers", HEAD_POD.to_owned(), true)
        );
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed.pointer(&format!("{HEAD_POD}/nodeSelector")).unwrap(),
            &json!({"node-role": "worker"})
        );
    }
}

mod resources {
    use super::*;

    #[test]
    fn missing_values_are_filled_without_going_below_a_request() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{WORKER_RAY}/resources"),
            json!({"requests": {"cpu": "4"}}),
        );
        let d = evaluate(&c);
        let (rule, path, fillable) = only(&d);
        assert_eq!((rule, fillable), ("resources/missing", true));
        assert_eq!(path, format!("{WORKER_RAY}/resources"));
        let fixed = apply(&c, &d.patch);
        assert_eq!(
            fixed.pointer(&format!("{WORKER_RAY}/resources")).unwrap(),
            &json!({"requests": {"cpu": "4", "memory": "2Gi"},
                    "limits": {"cpu": "4", "memory": "2Gi"}})
        );
        assert!(evaluate(&fixed).violations.is_empty());
    }

    #[test]
    fn a_request_defaults_to_its_limit() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{WORKER_RAY}/resources"),
            json!({"limits": {"cpu": "500m", "memory": "1Gi"}}),
        );
        let fixed = apply(&c, &evaluate(&c).patch);
        assert_eq!(
            fixed
                .pointer(&format!("{WORKER_RAY}/resources/requests"))
                .unwrap(),
            &json!({"cpu": "500m", "memory": "1Gi"})
        );
    }

    #[test]
    fn a_limit_below_its_request_is_denied() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/resources/limits/memory"),
            json!("1Gi"),
        );
        let d = evaluate(&c);
        assert_eq!(
            only(&d),
            (
                "resources/limit-below-request",
                format!("{HEAD_RAY}/resources/limits/memory"),
                false
            )
        );
    }

    #[test]
    fn quantities_compare_across_units() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/resources/requests/cpu"),
            json!("1500m"),
        );
        set(
            &mut c,
            &format!("{HEAD_RAY}/resources/limits/cpu"),
            json!(2),
        );
        set(
            &mut c,
            &format!("{HEAD_RAY}/resources/limits/memory"),
            json!("2048Mi"),
        );
        assert!(evaluate(&c).violations.is_empty());
        // Exact, not floating point: 1Gi is 1073741824 bytes, not a byte more.
        let memory = format!("{HEAD_RAY}/resources");
        set(&mut c, &format!("{memory}/requests/memory"), json!("1Gi"));
        set(
            &mut c,
            &format!("{memory}/limits/memory"),
            json!("1073741824"),
        );
        assert!(evaluate(&c).violations.is_empty());
        set(
            &mut c,
            &format!("{memory}/limits/memory"),
            json!("1073741823"),
        );
        assert_eq!(rules(&evaluate(&c)), ["resources/limit-below-request"]);
    }

    #[test]
    fn maxima_and_gpu_equality_hold() {
        let text = raygate::policy::BUILT_IN_POLICY.replace("maximum: {}", "maximum: {cpu: \"1\"}");
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "max.yaml").unwrap());
        let mut c = cluster("c");
        let resources = c.pointer_mut(&format!("{WORKER_RAY}/resources")).unwrap();
        resources["requests"]["nvidia.com/gpu"] = json!("1");
        resources["limits"]["nvidia.com/gpu"] = json!("2");
        let d = evaluate_with(&engine, &c, &[network_policy("c")]);
        let found: Vec<(&str, &str)> = d
            .violations
            .iter()
            .map(|v| (v.rule.as_str(), v.path.as_str()))
            .collect();
        let head_limit = format!("{HEAD_RAY}/resources/limits/cpu");
        let worker_limit = format!("{WORKER_RAY}/resources/limits/cpu");
        let gpu = format!("{WORKER_RAY}/resources/limits/nvidia.com~1gpu");
        assert_eq!(
            found,
            [
                ("resources/above-maximum", head_limit.as_str()),
                ("resources/above-maximum", worker_limit.as_str()),
                ("resources/gpu-mismatch", gpu.as_str())
            ]
        );
    }

    #[test]
    fn a_nonsense_quantity_is_reported() {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/resources/requests/cpu"),
            json!("lots"),
        );
        let d = evaluate(&c);
        assert_eq!(rules(&d), ["resources/invalid-quantity"]);
    }
}

mod network_policy {
    use super::*;

    #[test]
    fn a_cluster_without_a_network_policy_is_denied() {
        let d = evaluate_with(&engine(), &cluster("c"), &[]);
        assert_eq!(
            rules(&d),
            ["network-policy/missing", "network-policy/missing"]
        );
        assert!(d.violations[0].message.contains("ray.io/cluster=c"));
        assert!(!d.allowed());
    }

    #[test]
    fn a_policy_in_another_namespace_does_not_count() {
        let mut np = network_policy("c");
        np["metadata"]["namespace"] = json!("elsewhere");
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert_eq!(
            rules(&d),
            ["network-policy/missing", "network-policy/missing"]
        );
    }

    #[test]
    fn the_documents_five_port_policy_gets_one_denial_per_missing_port_group() {
        let mut np = network_policy("c");
        np["spec"]["ingress"][0]["ports"] = json!([{"port": 6380}, {"port": 10002}, {"port": 8266}, {"port": 8001}, {"port": 8081}]);
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        let lines: Vec<(&str, &str)> = d
            .violations
            .iter()
            .map(|v| {
                (
                    v.rule.as_str(),
                    v.message.split("add `").nth(1).unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "network-policy/blocked-ports",
                    "- {protocol: TCP, port: 8601}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
                (
                    "network-policy/blocked-ports",
                    "- {protocol: TCP, port: 52365}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
                (
                    "network-policy/blocked-ports",
                    "- {protocol: TCP, port: 8301, endPort: 8400}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
                (
                    "network-policy/blocked-ports",
                    "- {protocol: TCP, port: 8401, endPort: 8500}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
                (
                    "network-policy/blocked-ports",
                    "- {protocol: TCP, port: 8501, endPort: 8600}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
                (
                    "network-policy/worker-ports",
                    "- {protocol: TCP, port: 10003, endPort: 19999}` to the ports of ingress rule 1 of NetworkPolicy \"c-ray\""
                ),
            ],
            "{:#?}",
            d.violations
        );
        assert!(
            d.violations
                .iter()
                .all(|v| v.action == Action::Deny && v.path == HEAD)
        );
        assert!(
            d.violations[2]
                .message
                .contains("(to the head group and worker group \"cpu\")"),
            "{}",
            d.violations[2].message
        );
        assert!(!d.allowed());
    }

    #[test]
    fn a_port_only_the_head_serves_is_reported_for_the_head_alone() {
        let mut np = network_policy("c");
        let mut ports = planned_policy_ports();
        ports.as_array_mut().unwrap().remove(0);
        np["spec"]["ingress"][0]["ports"] = ports;
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert_eq!(rules(&d), ["network-policy/blocked-ports"]);
        assert!(
            d.violations[0].message.contains(
                "blocks TCP 6380 (gcs-server) between the cluster's pods (to the head group)"
            ),
            "{}",
            d.violations[0].message
        );
    }

    #[test]
    fn named_ports_and_end_ports_count() {
        let mut np = network_policy("c");
        let mut ports = planned_policy_ports();
        ports[0] = json!({"port": "gcs-server"});
        np["spec"]["ingress"][0]["ports"] = ports;
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    #[test]
    fn the_worker_process_range_must_be_admitted() {
        let mut np = network_policy("c");
        let mut ports = planned_policy_ports();
        ports.as_array_mut().unwrap().pop();
        // Half the range is not enough.
        ports
            .as_array_mut()
            .unwrap()
            .push(json!({"port": 10003, "endPort": 15000}));
        np["spec"]["ingress"][0]["ports"] = ports;
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert_eq!(rules(&d), ["network-policy/worker-ports"]);
        assert_eq!(d.violations[0].action, Action::Deny);
        assert!(
            d.violations[0]
                .message
                .contains("tasks, actors and object transfers between nodes time out"),
            "{}",
            d.violations[0].message
        );
    }

    fn egress_policy(egress: Value) -> Value {
        let mut np = network_policy("c");
        np["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
        np["spec"]["egress"] = egress;
        np
    }

    fn to_cluster() -> Value {
        json!({"to": [{"podSelector": {"matchLabels": {"ray.io/cluster": "c"}}}]})
    }

    fn to_dns() -> Value {
        json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
    }

    #[test]
    fn an_egress_policy_must_admit_the_plan_too() {
        let np = egress_policy(json!([to_dns()]));
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        let cut: Vec<_> = d
            .violations
            .iter()
            // Its one rule is DNS's: a new rule for the cluster's pods, not a port added there.
            .filter(|v| v.message.contains("add to NetworkPolicy \"c-ray\" an egress rule `- {to: [{podSelector: {matchLabels: {ray.io/cluster: c}}}], ports: [{protocol: TCP, port: "))
            .collect();
        assert_eq!(cut.len(), 11, "{:#?}", d.violations);
    }

    /// The built-in plan's text with its `dns` block replaced.
    fn policy_with_dns(dns: &str) -> String {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "    dns:\n      namespace: kube-system\n      podLabels: {k8s-app: kube-dns}\n      port: 53\n      addresses: []\n",
            &format!("    dns: {dns}\n"),
        );
        assert_ne!(
            text,
            raygate::policy::BUILT_IN_POLICY,
            "the built-in dns block moved"
        );
        text
    }

    fn engine_with_dns(dns: &str) -> raygate::Engine {
        let text = policy_with_dns(dns);
        raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap())
    }

    /// NodeLocal DNSCache: Pods query a link-local address no Pod holds. A rule to it is
    /// unverifiable by default and reaches DNS once the plan names the address.
    #[test]
    fn dns_at_an_address_the_plan_names_is_reached_by_an_ip_block() {
        let node_local = json!({"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]});
        let policies = [egress_policy(json!([to_cluster(), node_local]))];
        let d = evaluate_with(&engine(), &cluster("c"), &policies);
        assert_eq!(
            rules(&d),
            ["network-policy/not-verified"],
            "{:#?}",
            d.violations
        );
        let engine = engine_with_dns(
            "{namespace: kube-system, podLabels: {k8s-app: kube-dns}, addresses: [169.254.20.10/32]}",
        );
        let d = evaluate_with(&engine, &cluster("c"), &policies);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        // Another address is still no DNS the plan knows.
        let elsewhere = json!({"to": [{"ipBlock": {"cidr": "198.18.9.9/32"}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]});
        let d = evaluate_with(
            &engine,
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), elsewhere]))],
        );
        assert_eq!(
            rules(&d),
            ["network-policy/not-verified"],
            "{:#?}",
            d.violations
        );
    }

    /// OpenShift's DNS Pods run in openshift-dns and listen on 5353: a rule to kube-dns on 53
    /// reaches nothing there, and the fix names the plan's DNS.
    #[test]
    fn dns_elsewhere_is_judged_where_the_plan_says_it_is() {
        let engine = engine_with_dns(
            "{namespace: openshift-dns, podLabels: {dns.operator.openshift.io/daemonset-dns: default}, port: 5353}",
        );
        let d = evaluate_with(
            &engine,
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), to_dns()]))],
        );
        assert_eq!(
            rules(&d),
            ["network-policy/dns-egress"],
            "{:#?}",
            d.violations
        );
        let message = &d.violations[0].message;
        assert!(message.contains("(UDP 5353 and TCP 5353)"), "{message}");
        let code = message.rsplit("egress rule `").next().unwrap();
        let rule: Value = serde_yaml_ng::from_str(code.split('`').next().unwrap()).unwrap();
        let mut hinted = rule[0].clone();
        hinted["ports"] =
            json!([{"protocol": "UDP", "port": 5353}, {"protocol": "TCP", "port": 5353}]);
        assert_eq!(
            hinted["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "openshift-dns"
        );
        let d = evaluate_with(
            &engine,
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), hinted]))],
        );
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    #[test]
    fn a_dns_block_that_names_nothing_or_no_cidr_is_refused() {
        for (dns, want) in [
            (
                "{podLabels: {}}",
                "spec.networkPolicy.dns: name the DNS Pods' labels",
            ),
            (
                "{addresses: [169.254.20.10]}",
                "spec.networkPolicy.dns.addresses[0]: \"169.254.20.10\" is not a CIDR",
            ),
            (
                "{namespace: Kube_System}",
                "spec.networkPolicy.dns.namespace: \"Kube_System\" is not a namespace name",
            ),
            ("{port: 0}", "spec.networkPolicy.dns.port: must be 1-65535"),
        ] {
            let err = Policy::from_yaml(&policy_with_dns(dns), "p.yaml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{dns}: {err}");
        }
    }

    #[test]
    fn restricted_egress_must_reach_dns() {
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster()]))],
        );
        assert_eq!(rules(&d), ["network-policy/dns-egress"]);
        assert_eq!(d.violations[0].path, "/spec");
        assert!(
            d.violations[0].message.contains("(UDP 53 and TCP 53)"),
            "{}",
            d.violations[0].message
        );
        // Only UDP is not enough: large answers fall back to TCP.
        let mut udp_only = to_dns();
        udp_only["ports"] = json!([{"protocol": "UDP", "port": 53}]);
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), udp_only]))],
        );
        assert!(d.violations[0].message.contains("(TCP 53)"));
        // DNS to the namespace's own pods does not reach kube-dns.
        let mut own_pods = to_dns();
        own_pods["to"] = json!([{"podSelector": {}}]);
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), own_pods]))],
        );
        assert_eq!(rules(&d), ["network-policy/dns-egress"]);
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), to_dns()]))],
        );
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    /// The API server's defaulting, applied before judging, as offline `check` must.
    #[test]
    fn policies_are_judged_as_the_api_server_defaults_them() {
        // `policyTypes: []` with `ingress: []` becomes [Ingress]: it blocks all ingress.
        let mut np = network_policy("c");
        np["spec"]["policyTypes"] = json!([]);
        np["spec"]["ingress"] = json!([]);
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert!(
            rules(&d).contains(&"network-policy/blocked-ports"),
            "{:#?}",
            d.violations
        );
        // No policyTypes and an empty egress list leave egress unrestricted.
        let mut np = network_policy("c");
        np["spec"].as_object_mut().unwrap().remove("policyTypes");
        np["spec"]["egress"] = json!([]);
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        // A policy without spec selects every Pod and denies all ingress: the cluster is
        // covered, and cut off.
        let mut bare = network_policy("other");
        bare.as_object_mut().unwrap().remove("spec");
        let d = evaluate_with(&engine(), &cluster("c"), &[bare]);
        assert!(
            !rules(&d).contains(&"network-policy/missing"),
            "{:#?}",
            d.violations
        );
        assert!(
            rules(&d).contains(&"network-policy/blocked-ports"),
            "{:#?}",
            d.violations
        );
    }

    /// Policies are matched against the labels KubeRay v1.5.0 really sets: its own
    /// (`app.kubernetes.io/name`, `ray.io/identifier`, ...), overridden by the template's.
    #[test]
    fn selection_uses_the_labels_kuberay_really_sets() {
        let mut np = network_policy("c");
        np["spec"]["podSelector"] = json!({"matchLabels": {
            "app.kubernetes.io/name": "kuberay", "ray.io/identifier": "c-worker"}});
        np["spec"]["ingress"][0]["from"] = json!([{"podSelector": {"matchLabels": {"app.kubernetes.io/created-by": "kuberay-operator"}}}]);
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        // Only the workers are selected: the head is not covered.
        assert_eq!(rules(&d), ["network-policy/missing"], "{:#?}", d.violations);
        assert_eq!(d.violations[0].path, "/spec/headGroupSpec");
        // A template label overrides KubeRay's ray.io/is-ray-node, so an exclusion by it holds.
        let mut c = cluster("c");
        c["spec"]["workerGroupSpecs"][0]["template"]["metadata"] =
            json!({"labels": {"ray.io/is-ray-node": "no"}});
        let mut np = network_policy("c");
        np["spec"]["podSelector"] = json!({"matchLabels": {"ray.io/is-ray-node": "yes"}});
        let d = evaluate_with(&engine(), &c, &[np]);
        assert_eq!(rules(&d), ["network-policy/missing"], "{:#?}", d.violations);
        assert_eq!(d.violations[0].path, "/spec/workerGroupSpecs/0");
    }

    /// DNS must be reachable by every group whose egress is restricted, from its own
    /// policies, at the cluster's DNS Pods.
    #[test]
    fn dns_rules_count_only_when_they_reach_kube_dns_from_every_group() {
        // The wrong namespace, or Pods that are not kube-dns.
        for (field, value) in [
            (
                "namespaceSelector",
                json!({"matchLabels": {"kubernetes.io/metadata.name": "default"}}),
            ),
            ("podSelector", json!({"matchLabels": {"app": "web"}})),
        ] {
            let mut dns = to_dns();
            dns["to"][0][field] = value;
            let d = evaluate_with(
                &engine(),
                &cluster("c"),
                &[egress_policy(json!([to_cluster(), dns]))],
            );
            assert_eq!(rules(&d), ["network-policy/dns-egress"], "{field}");
        }
        // An ipBlock whose except covers the whole block admits nothing.
        let mut emptied = to_dns();
        emptied["to"] = json!([{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.0.0/17", "198.18.128.0/17"]}}]);
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), emptied]))],
        );
        assert_eq!(rules(&d), ["network-policy/dns-egress"]);
        // A DNS rule in the head's policy does not cover workers whose own policy lacks one.
        let mut head = egress_policy(json!([to_cluster(), to_dns()]));
        head["metadata"]["name"] = json!("head");
        head["spec"]["podSelector"] = json!({"matchLabels": {"ray.io/node-type": "head"}});
        let mut workers = egress_policy(json!([to_cluster()]));
        workers["metadata"]["name"] = json!("workers");
        workers["spec"]["podSelector"] = json!({"matchLabels": {"ray.io/node-type": "worker"}});
        let d = evaluate_with(&engine(), &cluster("c"), &[head, workers]);
        assert_eq!(
            rules(&d),
            ["network-policy/dns-egress"],
            "{:#?}",
            d.violations
        );
        assert!(d.violations[0].message.contains("worker group \"cpu\""));
        // kube-system selected by a label raygate cannot see offline: not verified, not passed.
        let mut labelled = to_dns();
        labelled["to"][0]["namespaceSelector"] = json!({"matchLabels": {"team": "platform"}});
        let d = evaluate_with(
            &engine(),
            &cluster("c"),
            &[egress_policy(json!([to_cluster(), labelled]))],
        );
        assert_eq!(
            rules(&d),
            ["network-policy/not-verified"],
            "{:#?}",
            d.violations
        );
    }

    /// A hint names what blocks: the peers when a rule already admits the port, a missing
    /// rule when there is none, and the rule's ports only otherwise.
    #[test]
    fn hints_name_what_blocks() {
        let mut wrong_peer = network_policy("c");
        wrong_peer["spec"]["ingress"][0]["from"] =
            json!([{"podSelector": {"matchLabels": {"app": "web"}}}]);
        let d = evaluate_with(&engine(), &cluster("c"), &[wrong_peer]);
        assert!(d.violations.iter().all(|v| v.message.contains(
            "ingress rule 1 of NetworkPolicy \"c-ray\" admits the port but not from the cluster's pods: add `{podSelector: {matchLabels: {ray.io/cluster: c}}}` to its from"
        )), "{:#?}", d.violations);
        let mut no_rule = network_policy("c");
        no_rule["spec"].as_object_mut().unwrap().remove("ingress");
        let d = evaluate_with(&engine(), &cluster("c"), &[no_rule]);
        assert!(!d.violations.is_empty());
        assert!(
            d.violations.iter().all(|v| {
                v.message.contains(
            "add to NetworkPolicy \"c-ray\" an ingress rule `- {from: [{podSelector: {matchLabels: {ray.io/cluster: c}}}]}`"
        )
            }),
            "{:#?}",
            d.violations
        );
    }

    /// A named port admits what the destination declares under that name over TCP.
    #[test]
    fn named_ports_resolve_on_the_destination_by_name_and_protocol() {
        let mut c = cluster("c");
        for group in ["/spec/headGroupSpec", "/spec/workerGroupSpecs/0"] {
            let ports = c
                .pointer_mut(&format!("{group}/template/spec/containers/0/ports"))
                .unwrap()
                .as_array_mut()
                .unwrap();
            ports.push(json!({"name": "agent-grpc", "containerPort": 8601}));
        }
        let mut np = network_policy("c");
        np["spec"]["ingress"][0]["ports"] = json!([
            {"port": "gcs-server"}, {"port": "client"}, {"port": "dashboard"}, {"port": "serve"},
            {"port": "metrics"}, {"port": "agent-grpc"}, {"port": 52365},
            {"port": 8301, "endPort": 8600}, {"port": 10003, "endPort": 19999}]);
        let d = evaluate_with(&engine(), &c, std::slice::from_ref(&np));
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        // The same names over UDP admit nothing over TCP.
        for port in np["spec"]["ingress"][0]["ports"].as_array_mut().unwrap() {
            if port["port"].is_string() {
                port["protocol"] = json!("UDP");
            }
        }
        let d = evaluate_with(&engine(), &c, &[np]);
        assert!(
            rules(&d).contains(&"network-policy/blocked-ports"),
            "{:#?}",
            d.violations
        );
    }

    #[test]
    fn the_autoscaler_must_reach_the_api_server() {
        let mut c = cluster("c");
        c["spec"]["enableInTreeAutoscaling"] = json!(true);
        // An autoscaler that can be told the GCS port 6380 (ports/autoscaler-gcs-port).
        c["spec"]["autoscalerOptions"] = json!({"image": "rayproject/ray:2.60.0"});
        let np = egress_policy(json!([to_cluster(), to_dns()]));
        let d = evaluate_with(&engine(), &c, std::slice::from_ref(&np));
        assert_eq!(rules(&d), ["network-policy/apiserver-egress"]);
        assert_eq!(d.violations[0].path, HEAD);
        let api =
            json!({"to": [{"ipBlock": {"cidr": "198.18.0.1/32"}}], "ports": [{"port": 6443}]});
        let np = egress_policy(json!([to_cluster(), to_dns(), api]));
        assert!(evaluate_with(&engine(), &c, &[np]).violations.is_empty());
        // Without autoscaling, nothing calls the API server.
        let np = egress_policy(json!([to_cluster(), to_dns()]));
        assert!(
            evaluate_with(&engine(), &cluster("c"), &[np])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn namespaces_the_policy_names_must_reach_their_ports() {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "externalAccess: []",
            "externalAccess: [{namespaceLabels: {team: monitoring}, ports: [metrics, dashboard]}]",
        );
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let d = evaluate_with(&engine, &cluster("c"), &[network_policy("c")]);
        assert_eq!(
            rules(&d),
            [
                "network-policy/external-access",
                "network-policy/external-access"
            ]
        );
        assert_eq!(d.violations[0].action, Action::Warn);
        assert!(
            d.violations[1]
                .message
                .contains("blocks TCP 8081 (metrics) to the worker group \"cpu\" from namespaces"),
            "{}",
            d.violations[1].message
        );
        assert!(
            d.violations[0]
                .message
                .contains("blocks TCP 8081 (metrics) and 8266 (dashboard) to the head group from namespaces labelled {team: monitoring}"),
            "{}",
            d.violations[0].message
        );
        assert!(d.allowed());
        let mut np = network_policy("c");
        np["spec"]["ingress"].as_array_mut().unwrap().push(
            json!({"from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
                         "ports": [{"port": 8081}, {"port": "dashboard"}]}),
        );
        assert!(
            evaluate_with(&engine, &cluster("c"), &[np])
                .violations
                .is_empty()
        );
        // A policy that names ports no plan entry has is refused at load.
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "externalAccess: []",
            "externalAccess: [{namespaceLabels: {team: x}, ports: [grafana]}]",
        );
        let err = Policy::from_yaml(&text, "p.yaml").unwrap_err().to_string();
        assert!(
            err.contains("spec.networkPolicy.externalAccess[0].ports[0]: \"grafana\""),
            "{err}"
        );
    }

    /// A same-namespace peer selected by a namespace label (`team: ml`) is judged on the
    /// namespace's real labels when the cluster state has them; offline it is assumed to
    /// match, and raygate says it could not tell.
    #[test]
    fn namespace_selectors_match_the_namespaces_real_labels() {
        let mut np = network_policy("c");
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"] =
            json!({"matchLabels": {"team": "ml"}});
        let policies = vec![std::sync::Arc::new(serde_json::from_value(np).unwrap())];
        let object = cluster("c");
        let view = ObjectRef::from_value(&object).unwrap();
        let judge = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            engine().evaluate(
                &view,
                &Context {
                    namespace_labels: labels,
                    ..Context::complete(&policies)
                },
            )
        };
        let ml: std::collections::BTreeMap<String, String> =
            [("team".to_owned(), "ml".to_owned())].into();
        assert!(
            judge(Some(&ml)).violations.is_empty(),
            "{:#?}",
            judge(Some(&ml)).violations
        );
        let other: std::collections::BTreeMap<String, String> =
            [("team".to_owned(), "web".to_owned())].into();
        let d = judge(Some(&other));
        assert!(
            d.violations
                .iter()
                .any(|v| v.rule.as_str() == "network-policy/blocked-ports"),
            "{:#?}",
            d.violations
        );
        let d = judge(None);
        assert_eq!(rules(&d), ["network-policy/not-verified"]);
        assert_eq!(d.violations[0].action, Action::Audit);
        assert!(d.violations[0].message.contains("assumed to match"));
        // A selector on the namespace's name alone needs no labels.
        let mut np = network_policy("c");
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"] =
            json!({"matchLabels": {"kubernetes.io/metadata.name": "elsewhere"}});
        let d = evaluate_with(&engine(), &cluster("c"), &[np]);
        assert!(
            d.violations
                .iter()
                .any(|v| v.rule.as_str() == "network-policy/blocked-ports")
        );
        assert!(
            !d.violations
                .iter()
                .any(|v| v.rule.as_str() == "network-policy/not-verified")
        );
    }

    /// KubeRay v1.5.0 has no `spec.networkPolicy` (a later operator has it behind an alpha
    /// gate): the field alone covers nothing, and the policies that exist are judged.
    #[test]
    fn kuberays_network_policy_field_alone_covers_nothing() {
        let mut c = cluster("c");
        c["spec"]["networkPolicy"] = json!({"mode": "DenyAllIngress"});
        assert_eq!(
            rules(&evaluate_with(&engine(), &c, &[])),
            ["network-policy/missing", "network-policy/missing"]
        );
        assert!(
            evaluate_with(&engine(), &c, &[network_policy("c")])
                .violations
                .is_empty()
        );
    }

    fn ray_job(name: &str) -> Value {
        let spec = cluster(name)["spec"].clone();
        json!({"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": name, "namespace": "kuberay"},
            "spec": {"entrypoint": "python x.py", "rayClusterSpec": spec}})
    }

    fn selecting(key: &str, value: &str) -> Value {
        let mut np = network_policy("j");
        let selector = json!({"matchLabels": {key: value}});
        np["spec"]["podSelector"] = selector.clone();
        np["spec"]["ingress"][0]["from"][0]["podSelector"] = selector;
        // The KubeRay operator follows the job on the head's dashboard, where its submitter
        // sends it.
        let ingress = np["spec"]["ingress"].as_array_mut().unwrap();
        ingress.push(operator_ingress(&["dashboard"]));
        ingress.push(json!({
            "from": [{"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "j"}}}],
            "ports": [{"port": "dashboard"}]
        }));
        np
    }

    #[test]
    fn a_rayjobs_pods_get_a_label_that_names_it_and_the_hint_selects_it() {
        let job = ray_job("j");
        let d = evaluate_with(&engine(), &job, &[]);
        let missing: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.rule.as_str() == "network-policy/missing")
            .collect();
        assert_eq!(missing.len(), 2);
        assert!(
            missing[0].message.contains(
                "create one selecting raygate.dev/ray-cr-name=j in namespace \"kuberay\""
            ),
            "{}",
            missing[0].message
        );
        let labels: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.rule.as_str() == "network-policy/pod-label")
            .collect();
        assert_eq!(labels.len(), 2);
        assert!(labels.iter().all(|v| v.fillable));
        let filled = apply(&job, &d.patch);
        for group in ["headGroupSpec", "workerGroupSpecs/0"] {
            assert_eq!(
                filled
                    .pointer(&format!(
                        "/spec/rayClusterSpec/{group}/template/metadata/labels/raygate.dev~1ray-cr-name"
                    ))
                    .unwrap(),
                "j"
            );
        }
        // A NetworkPolicy written from the hint covers the filled job, and the Pods the
        // operator makes from it carry the label.
        let np = selecting("raygate.dev/ray-cr-name", "j");
        assert!(
            evaluate_with(&engine(), &filled, std::slice::from_ref(&np))
                .violations
                .is_empty()
        );
        // KubeRay v1.5.0 puts the origin labels on the generated RayCluster, not its Pods.
        let d = evaluate_with(
            &engine(),
            &filled,
            &[selecting("ray.io/originated-from-cr-name", "j")],
        );
        assert_eq!(
            rules(&d),
            ["network-policy/missing", "network-policy/missing"]
        );
    }

    #[test]
    fn a_template_label_the_user_chose_is_kept() {
        let mut job = ray_job("j");
        for group in ["headGroupSpec", "workerGroupSpecs/0"] {
            job.pointer_mut(&format!("/spec/rayClusterSpec/{group}/template"))
                .unwrap()["metadata"] =
                json!({"labels": {"raygate.dev/ray-cr-name": "mine", "app": "a"}});
        }
        let d = evaluate_with(&engine(), &job, &[selecting("app", "a")]);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        assert!(d.patch.0.is_empty());
    }

    #[test]
    fn without_cluster_access_it_is_audited_never_denied() {
        let view_object = cluster("c");
        let view = ObjectRef::from_value(&view_object).unwrap();
        let d = engine().evaluate(&view, &Context::WITHOUT_CLUSTER);
        assert_eq!(rules(&d), ["network-policy/not-verified"]);
        assert_eq!(d.violations[0].action, Action::Audit);
        assert!(d.allowed_as_is());
    }

    /// KubeRay v1.5.0 follows a RayJob on the head's dashboard, and configures a RayService
    /// there and checks its head's Serve proxy on the serve port: the cluster's policies must
    /// let the operator's Pod (the policy's `networkPolicy.operator`) reach them.
    mod operator_access {
        use super::*;
        use raygate::rules::Violation;

        const RULE: &str = "network-policy/operator-access";
        const NOT_VERIFIED: &str = "network-policy/not-verified";
        const JOB_HEAD: &str = "/spec/rayClusterSpec/headGroupSpec";

        fn found(d: &raygate::Decision, rule: &str) -> Vec<Violation> {
            d.violations
                .iter()
                .filter(|v| v.rule.as_str() == rule)
                .cloned()
                .collect()
        }

        fn job_in(namespace: &str) -> Value {
            let mut job = ray_job("j");
            job["metadata"]["namespace"] = json!(namespace);
            job
        }

        /// The policy a user writes for job `j` in `namespace`: every port between the
        /// cluster's pods, and the dashboard for the submitter Pod only.
        fn submitter_only(namespace: &str) -> Value {
            let mut np = network_policy("j");
            np["metadata"]["namespace"] = json!(namespace);
            let selector = json!({"matchLabels": {"raygate.dev/ray-cr-name": "j"}});
            np["spec"]["podSelector"] = selector.clone();
            np["spec"]["ingress"][0]["from"][0]["podSelector"] = selector;
            np["spec"]["ingress"].as_array_mut().unwrap().push(json!({
                "from": [{"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "j"}}}],
                "ports": [{"port": "dashboard"}]
            }));
            np
        }

        fn with_ingress(mut np: Value, rule: Value) -> Value {
            np["spec"]["ingress"].as_array_mut().unwrap().push(rule);
            np
        }

        /// The rule of a hint's `add to NetworkPolicy ... rule `- {...}`` as YAML.
        fn hinted_rule(message: &str) -> Value {
            let code = message.rsplit('`').nth(1).expect("a rule in backquotes");
            let rules: Value = serde_yaml_ng::from_str(code).expect("the hint is YAML");
            rules[0].clone()
        }

        fn service(spec_ports: Option<&[&str]>) -> (Value, Value) {
            let object = json!({"apiVersion": "ray.io/v1", "kind": "RayService",
                "metadata": {"name": "s", "namespace": "kuberay"},
                "spec": {"rayClusterConfig": cluster("s")["spec"].clone()}});
            let mut np = network_policy("s");
            let selector = json!({"matchLabels": {"raygate.dev/ray-cr-name": "s"}});
            np["spec"]["podSelector"] = selector.clone();
            np["spec"]["ingress"][0]["from"][0]["podSelector"] = selector;
            if let Some(ports) = spec_ports {
                np = with_ingress(np, operator_ingress(ports));
            }
            (object, np)
        }

        #[test]
        fn a_rayjob_whose_policy_admits_only_the_submitter_is_denied_with_the_rule_to_add() {
            let np = submitter_only("kuberay");
            let d = evaluate_with(&engine(), &job_in("kuberay"), std::slice::from_ref(&np));
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].path, JOB_HEAD);
            assert_eq!(cut[0].action, Action::Deny);
            assert!(!cut[0].fillable);
            assert!(!d.allowed());
            assert!(
                cut[0].message.starts_with(
                    "NetworkPolicy \"j-ray\" blocks ingress from the KubeRay operator's Pod (namespace \"kuberay\", app.kubernetes.io/component=kuberay-operator) to the head on TCP 8266 (dashboard): KubeRay v1.5.0 follows the job on the dashboard"
                ),
                "{}",
                cut[0].message
            );
            // Same namespace: a podSelector alone.
            assert!(
                cut[0].message.ends_with(
                    "add to NetworkPolicy \"j-ray\" an ingress rule `- {from: [{podSelector: {matchLabels: {app.kubernetes.io/component: kuberay-operator}}}], ports: [{port: dashboard}]}`"
                ),
                "{}",
                cut[0].message
            );
            let fixed = with_ingress(np, hinted_rule(&cut[0].message));
            let d = evaluate_with(&engine(), &job_in("kuberay"), &[fixed]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            assert!(d.allowed(), "{:#?}", d.violations);

            // Another namespace: its name and the Pod's labels.
            let np = submitter_only("ml");
            let d = evaluate_with(&engine(), &job_in("ml"), std::slice::from_ref(&np));
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert!(
                cut[0].message.ends_with(
                    "add to NetworkPolicy \"j-ray\" an ingress rule `- {from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kuberay}}, podSelector: {matchLabels: {app.kubernetes.io/component: kuberay-operator}}}], ports: [{port: dashboard}]}`"
                ),
                "{}",
                cut[0].message
            );
            let fixed = with_ingress(np.clone(), hinted_rule(&cut[0].message));
            let d = evaluate_with(&engine(), &job_in("ml"), &[fixed]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            // A podSelector alone selects Pods of the policy's own namespace, not kuberay's.
            let same_namespace_only = with_ingress(np, operator_ingress(&["dashboard"]));
            let d = evaluate_with(&engine(), &job_in("ml"), &[same_namespace_only]);
            assert_eq!(found(&d, RULE).len(), 1, "{:#?}", d.violations);
        }

        #[test]
        fn admitting_the_operator_by_its_pod_and_namespace_passes() {
            let same = with_ingress(submitter_only("kuberay"), operator_ingress(&["dashboard"]));
            let d = evaluate_with(&engine(), &job_in("kuberay"), &[same]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            assert!(found(&d, NOT_VERIFIED).is_empty(), "{:#?}", d.violations);

            let operator = json!({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}}
            });
            for ports in [
                json!([{"port": "dashboard"}]),
                json!([{"port": 8266}]),
                json!(null),
            ] {
                let mut rule = json!({"from": [operator.clone()]});
                if !ports.is_null() {
                    rule["ports"] = ports.clone();
                }
                let np = with_ingress(submitter_only("ml"), rule);
                let d = evaluate_with(&engine(), &job_in("ml"), &[np]);
                assert!(found(&d, RULE).is_empty(), "{ports}: {:#?}", d.violations);
                assert!(found(&d, NOT_VERIFIED).is_empty(), "{:#?}", d.violations);
            }
            // Any Pod of kuberay, by its name.
            let np = with_ingress(
                submitter_only("ml"),
                json!({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay"}}}]}),
            );
            let d = evaluate_with(&engine(), &job_in("ml"), &[np]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            // The wrong port, or another operator label, still blocks it.
            let mut wrong_port = json!({"from": [operator.clone()], "ports": [{"port": 8265}]});
            let d = evaluate_with(
                &engine(),
                &job_in("ml"),
                &[with_ingress(submitter_only("ml"), wrong_port.clone())],
            );
            assert_eq!(found(&d, RULE).len(), 1, "{:#?}", d.violations);
            wrong_port["ports"] = json!([{"port": "dashboard"}]);
            wrong_port["from"][0]["podSelector"] =
                json!({"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}});
            let d = evaluate_with(
                &engine(),
                &job_in("ml"),
                &[with_ingress(submitter_only("ml"), wrong_port)],
            );
            assert_eq!(found(&d, RULE).len(), 1, "{:#?}", d.violations);
        }

        #[test]
        fn a_rayservice_must_admit_the_operator_on_serve_too() {
            let (object, np) = service(Some(&["dashboard"]));
            let d = evaluate_with(&engine(), &object, &[np]);
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].path, "/spec/rayClusterConfig/headGroupSpec");
            let message = &cut[0].message;
            assert!(
                message.contains("to the head on TCP 8001 (serve): KubeRay v1.5.0 checks the head's Serve proxy on the serve port"),
                "{message}"
            );
            assert!(!message.contains("8266"), "{message}");
            assert!(message.ends_with("ports: [{port: serve}]}`"), "{message}");

            let (object, np) = service(None);
            let d = evaluate_with(&engine(), &object, &[np]);
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert!(
                cut[0].message.contains("to the head on TCP 8266 (dashboard) and 8001 (serve): KubeRay v1.5.0 puts serveConfigV2"),
                "{}",
                cut[0].message
            );
            assert!(
                cut[0]
                    .message
                    .ends_with("ports: [{port: dashboard}, {port: serve}]}`"),
                "{}",
                cut[0].message
            );

            let (object, np) = service(Some(&["dashboard", "serve"]));
            let d = evaluate_with(&engine(), &object, &[np]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
        }

        /// A RayCluster of its own needs no operator traffic; one KubeRay generated from a
        /// RayJob (`ray.io/originated-from-crd`) does.
        #[test]
        fn only_clusters_the_operator_drives_are_judged() {
            let d = evaluate_with(&engine(), &cluster("c"), &[network_policy("c")]);
            assert!(d.violations.is_empty(), "{:#?}", d.violations);
            let mut generated = cluster("c");
            generated["metadata"]["labels"] = json!({
                "ray.io/originated-from-crd": "RayJob",
                "ray.io/originated-from-cr-name": "j"
            });
            let d = evaluate_with(&engine(), &generated, &[network_policy("c")]);
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].path, HEAD);
            assert!(cut[0].message.contains("8266 (dashboard)"));
            generated["metadata"]["labels"]["ray.io/originated-from-crd"] = json!("RayService");
            let d = evaluate_with(&engine(), &generated, &[network_policy("c")]);
            assert!(
                found(&d, RULE)[0]
                    .message
                    .contains("8266 (dashboard) and 8001 (serve)"),
                "{:#?}",
                d.violations
            );
            // A job whose head no policy restricts is reached.
            let d = evaluate_with(&engine(), &job_in("kuberay"), &[]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
        }

        #[test]
        fn without_an_operator_in_the_policy_the_rule_does_not_run() {
            let built_in = raygate::policy::BUILT_IN_POLICY;
            let block = "    operator:\n      namespace: kuberay\n      podLabels: {app.kubernetes.io/component: kuberay-operator}\n";
            assert!(built_in.contains(block));
            for replacement in ["", "    operator: null\n"] {
                let text = built_in.replace(block, replacement);
                let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
                assert!(engine.policy().spec().network_policy.operator.is_none());
                let d = evaluate_with(&engine, &job_in("kuberay"), &[submitter_only("kuberay")]);
                assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
                assert!(found(&d, NOT_VERIFIED).is_empty(), "{:#?}", d.violations);
            }
            // The rule can be switched off like any other.
            let text = built_in.replace(
                "network-policy/operator-access: deny",
                "network-policy/operator-access: off",
            );
            let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
            let d = evaluate_with(&engine, &job_in("kuberay"), &[submitter_only("kuberay")]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
        }

        #[test]
        fn a_broken_operator_entry_is_refused_naming_the_field() {
            let block = "    operator:\n      namespace: kuberay\n      podLabels: {app.kubernetes.io/component: kuberay-operator}\n";
            for (entry, wanted) in [
                (
                    "    operator: {namespace: \"\", podLabels: {app: x}}\n",
                    "spec.networkPolicy.operator.namespace: name the namespace",
                ),
                (
                    "    operator: {namespace: KubeRay}\n",
                    "spec.networkPolicy.operator.namespace: \"KubeRay\" is not a namespace name",
                ),
                (
                    "    operator: {namespace: kuberay, podLabels: {\"bad key\": x}}\n",
                    "spec.networkPolicy.operator.podLabels: key \"bad key\"",
                ),
                (
                    "    operator: {namespace: kuberay, podLabels: {Example.com/app: x}}\n",
                    "spec.networkPolicy.operator.podLabels: key \"Example.com/app\" has a prefix",
                ),
                (
                    "    operator: {namespace: kuberay, podLabels: {app: -x}}\n",
                    "spec.networkPolicy.operator.podLabels.app: \"-x\" is not a label value",
                ),
                (
                    "    operator: {podLabels: {app: x}}\n",
                    "missing field `namespace`",
                ),
            ] {
                let text = raygate::policy::BUILT_IN_POLICY.replace(block, entry);
                let err = Policy::from_yaml(&text, "p.yaml").unwrap_err().to_string();
                assert!(err.contains(wanted), "{entry}: {err}");
            }
        }

        /// Without cluster access the cluster's coverage is unverified as a whole; a peer
        /// raygate cannot judge offline (the operator namespace's other labels, an ipBlock)
        /// is unverified, never denied.
        #[test]
        fn what_cannot_be_seen_is_unverified() {
            let object = job_in("kuberay");
            let view = ObjectRef::from_value(&object).unwrap();
            let d = engine().evaluate(&view, &Context::WITHOUT_CLUSTER);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            assert_eq!(found(&d, NOT_VERIFIED).len(), 1, "{:#?}", d.violations);

            let by_team = json!({"from": [{
                "namespaceSelector": {"matchLabels": {"team": "platform"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}}
            }], "ports": [{"port": "dashboard"}]});
            let np = with_ingress(submitter_only("ml"), by_team.clone());
            let d = evaluate_with(&engine(), &job_in("ml"), &[np]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            let unverified = found(&d, NOT_VERIFIED);
            assert_eq!(unverified.len(), 1, "{:#?}", d.violations);
            assert_eq!(unverified[0].action, Action::Audit);
            assert_eq!(unverified[0].path, JOB_HEAD);
            assert!(
                unverified[0].message.starts_with(
                    "could not verify that the KubeRay operator's Pod (namespace \"kuberay\", app.kubernetes.io/component=kuberay-operator) reaches TCP 8266 (dashboard) of the head: a NetworkPolicy selects namespace \"kuberay\" by labels raygate cannot see here"
                ),
                "{}",
                unverified[0].message
            );
            assert!(d.allowed());

            // In the operator's own namespace its labels are known when the context knows them.
            let np = with_ingress(submitter_only("kuberay"), by_team);
            let policies = vec![std::sync::Arc::new(serde_json::from_value(np).unwrap())];
            let object = job_in("kuberay");
            let view = ObjectRef::from_value(&object).unwrap();
            let judge = |team: &str| {
                let labels: std::collections::BTreeMap<String, String> =
                    [("team".to_owned(), team.to_owned())].into();
                engine().evaluate(
                    &view,
                    &Context {
                        namespace_labels: Some(&labels),
                        ..Context::complete(&policies)
                    },
                )
            };
            let d = judge("platform");
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            assert!(found(&d, NOT_VERIFIED).is_empty(), "{:#?}", d.violations);
            let d = judge("web");
            assert_eq!(found(&d, RULE).len(), 1, "{:#?}", d.violations);

            // An ipBlock: every address holds the operator's, some addresses may not.
            for (cidr, verified) in [("0.0.0.0/0", true), ("10.0.0.0/8", false)] {
                let np = with_ingress(
                    submitter_only("ml"),
                    json!({"from": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": "dashboard"}]}),
                );
                let d = evaluate_with(&engine(), &job_in("ml"), &[np]);
                assert!(found(&d, RULE).is_empty(), "{cidr}: {:#?}", d.violations);
                let unverified = found(&d, NOT_VERIFIED);
                assert_eq!(
                    unverified.is_empty(),
                    verified,
                    "{cidr}: {:#?}",
                    d.violations
                );
                if !verified {
                    assert!(unverified[0].message.contains("an ipBlock"));
                }
            }
        }

        /// In its own namespace the operator's egress counts too.
        #[test]
        fn the_operators_own_egress_counts_in_its_namespace() {
            let ingress = with_ingress(submitter_only("kuberay"), operator_ingress(&["dashboard"]));
            let operator_policy = json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "kuberay-operator", "namespace": "kuberay"},
                "spec": {
                    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
                }
            });
            let d = evaluate_with(
                &engine(),
                &job_in("kuberay"),
                &[ingress.clone(), operator_policy.clone()],
            );
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert!(
                cut[0].message.starts_with(
                    "NetworkPolicy \"kuberay-operator\" blocks egress from the KubeRay operator's Pod"
                ),
                "{}",
                cut[0].message
            );
            assert!(
                cut[0].message.ends_with(
                    "add to NetworkPolicy \"kuberay-operator\" an egress rule `- {to: [{podSelector: {matchLabels: {raygate.dev/ray-cr-name: j, ray.io/node-type: head}}}], ports: [{port: dashboard}]}`"
                ),
                "{}",
                cut[0].message
            );
            let mut fixed = operator_policy.clone();
            fixed["spec"]["egress"]
                .as_array_mut()
                .unwrap()
                .push(hinted_rule(&cut[0].message));
            let d = evaluate_with(&engine(), &job_in("kuberay"), &[ingress, fixed]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
            // Both ways cut: both fixes.
            let d = evaluate_with(
                &engine(),
                &job_in("kuberay"),
                &[submitter_only("kuberay"), operator_policy.clone()],
            );
            let cut = found(&d, RULE);
            assert!(
                cut[0].message.starts_with("NetworkPolicies \"j-ray\" and \"kuberay-operator\" block ingress and egress from"),
                "{}",
                cut[0].message
            );
            // A job in another namespace: kuberay's policies are not the cluster's to judge.
            let mut elsewhere = operator_policy;
            elsewhere["metadata"]["namespace"] = json!("ml");
            let np = with_ingress(
                submitter_only("ml"),
                json!({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay"}}}]}),
            );
            let d = evaluate_with(&engine(), &job_in("ml"), &[np, elsewhere]);
            assert!(found(&d, RULE).is_empty(), "{:#?}", d.violations);
        }

        /// The RayCluster KubeRay v1.5.0 generates from a (filled) RayJob `j`.
        fn generated_from(job: &Value) -> Value {
            json!({
                "apiVersion": "ray.io/v1", "kind": "RayCluster",
                "metadata": {"name": "j-x7k2p", "namespace": "kuberay", "labels": {
                    "ray.io/originated-from-crd": "RayJob",
                    "ray.io/originated-from-cr-name": "j"
                }},
                "spec": job["spec"]["rayClusterSpec"].clone()
            })
        }

        /// A NetworkPolicy change that takes the operator's rule away from a live job's
        /// cluster is warned like one that uncovers it.
        #[test]
        fn dropping_the_operators_rule_from_a_live_jobs_policy_is_warned() {
            use raygate::engine::NetworkPolicyChange;
            let job = job_in("kuberay");
            let filled = apply(&job, &evaluate_with(&engine(), &job, &[]).patch);
            let live = generated_from(&filled);
            let arcs = |policies: &[Value]| -> Vec<std::sync::Arc<_>> {
                policies
                    .iter()
                    .map(|p| std::sync::Arc::new(serde_json::from_value(p.clone()).unwrap()))
                    .collect()
            };
            let before = arcs(&[with_ingress(
                submitter_only("kuberay"),
                operator_ingress(&["dashboard"]),
            )]);
            let after = arcs(&[submitter_only("kuberay")]);
            let change = |before, after| {
                engine().evaluate_network_policy_change(
                    &NetworkPolicyChange {
                        namespace: "kuberay",
                        name: "j-ray",
                        deleting: false,
                        creating: false,
                        by_kubernetes: false,
                        namespace_labels: None,
                        before,
                        after,
                    },
                    &[ObjectRef::from_value(&live).unwrap()],
                )
            };
            let d = change(&before, &after);
            assert_eq!(rules(&d), ["network-policy/uncovers-cluster"]);
            assert!(
                d.violations[0]
                    .message
                    .contains("blocks ingress from the KubeRay operator's Pod"),
                "{}",
                d.violations[0].message
            );
            // Giving it back is no harm.
            assert!(change(&after, &before).violations.is_empty());
        }

        /// With `enforceOn: pods` the RayJob gets a warning and the head Pod of its generated
        /// RayCluster is denied until the policy admits the operator, like the other
        /// coverage findings.
        #[test]
        fn at_admission_the_finding_moves_to_the_pods() {
            let policies = vec![std::sync::Arc::new(
                serde_json::from_value(submitter_only("kuberay")).unwrap(),
            )];
            let admission = |object: &Value, live: Option<&Value>| {
                let view = ObjectRef::from_value(object).unwrap();
                engine().evaluate(
                    &view,
                    &Context {
                        at_admission: true,
                        pod_cluster: live.and_then(ObjectRef::from_value),
                        ..Context::complete(&policies)
                    },
                )
            };
            let job = job_in("kuberay");
            let d = admission(&job, None);
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].action, Action::Warn);
            assert!(
                cut[0]
                    .message
                    .ends_with("; until then its Pods are denied and the operator retries")
            );
            assert!(d.allowed());

            // The RayCluster KubeRay generates from the filled job, and its head Pod.
            let generated = generated_from(&apply(&job, &d.patch));
            let mut head = ray_pod("j-x7k2p", true);
            head["metadata"]["labels"]["raygate.dev/ray-cr-name"] = json!("j");
            let d = admission(&head, Some(&generated));
            let cut = found(&d, RULE);
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].action, Action::Deny);
            assert!(
                cut[0].message.starts_with("its RayCluster \"j-x7k2p\": NetworkPolicy \"j-ray\" blocks ingress from the KubeRay operator's Pod"),
                "{}",
                cut[0].message
            );
            assert!(!d.allowed());
        }

        /// The policies `raygate fix` writes for the cluster tier's RayJob and RayService admit
        /// the operator (in kuberay, by its label); without that rule they are denied.
        #[test]
        fn the_cluster_tiers_generated_policies_admit_the_operator() {
            for (file, ports) in [
                ("tests/cluster/manifests/rayjob.yaml", "8266 (dashboard)"),
                (
                    "tests/cluster/manifests/rayservice.yaml",
                    "8266 (dashboard) and 8001 (serve)",
                ),
            ] {
                let text = std::fs::read_to_string(file).unwrap();
                let value = raygate::manifest::parse(file, &text)
                    .unwrap()
                    .documents
                    .into_iter()
                    .filter_map(|d| d.value)
                    .find(|v| v["apiVersion"] == "ray.io/v1")
                    .unwrap();
                let d = evaluate_with(&engine(), &value, &[]);
                let ray = &apply(&value, &d.patch);
                let object = ObjectRef::from_value(ray).unwrap();
                let raygate::ray::Target::Cluster(cluster) = raygate::ray::Target::of(&object)
                else {
                    panic!("{file}: no cluster spec");
                };
                let plan = raygate::policy::Policy::built_in();
                let generated = raygate::rules::network_policy::generate(
                    &cluster,
                    object.namespace,
                    &plan,
                    &[],
                )
                .unwrap();
                let mut policies = vec![generated.object];
                let d = evaluate_with(&engine(), ray, &policies);
                assert!(found(&d, RULE).is_empty(), "{file}: {:#?}", d.violations);
                assert!(
                    found(&d, NOT_VERIFIED).is_empty(),
                    "{file}: {:#?}",
                    d.violations
                );
                assert!(d.allowed(), "{file}: {:#?}", d.violations);
                // Without the operator's rule.
                policies[0]["spec"]["ingress"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|rule| {
                        rule.pointer("/from/0/podSelector/matchLabels/app.kubernetes.io~1component")
                            .is_none()
                    });
                let d = evaluate_with(&engine(), ray, &policies);
                let cut = found(&d, RULE);
                assert_eq!(cut.len(), 1, "{file}: {:#?}", d.violations);
                assert!(
                    cut[0]
                        .message
                        .contains(&format!("to the head on TCP {ports}:")),
                    "{}",
                    cut[0].message
                );
            }
        }
    }

    /// KubeRay v1.5.0 runs a RayJob's `ray job submit` in a Job named after it, which talks
    /// to the head's dashboard: the cluster's policies must let that Pod through.
    mod submitter_access {
        use super::*;

        const RULE: &str = "network-policy/submitter-access";

        fn without_submitter() -> Value {
            let mut np = selecting("raygate.dev/ray-cr-name", "j");
            np["spec"]["ingress"]
                .as_array_mut()
                .unwrap()
                .retain(|rule| {
                    rule.pointer("/from/0/podSelector/matchLabels/batch.kubernetes.io~1job-name")
                        .is_none()
                });
            np
        }

        fn filled_job(mode: Option<&str>) -> Value {
            let mut job = ray_job("j");
            if let Some(mode) = mode {
                job["spec"]["submissionMode"] = json!(mode);
            }
            let d = evaluate_with(&engine(), &job, &[]);
            apply(&job, &d.patch)
        }

        #[test]
        fn a_rayjob_whose_policy_cuts_its_submitter_is_denied_and_the_hint_fixes_it() {
            let job = filled_job(None);
            let np = without_submitter();
            let d = evaluate_with(&engine(), &job, std::slice::from_ref(&np));
            let cut: Vec<_> = d
                .violations
                .iter()
                .filter(|v| v.rule.as_str() == RULE)
                .collect();
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert_eq!(cut[0].action, Action::Deny);
            assert_eq!(cut[0].path, "/spec/rayClusterSpec/headGroupSpec");
            assert!(
                cut[0].message.starts_with("NetworkPolicy \"j-ray\" keeps the RayJob's submitter Pod (batch.kubernetes.io/job-name=j) from reaching the head's dashboard on TCP 8266"),
                "{}",
                cut[0].message
            );
            let code = cut[0].message.rsplit('`').nth(1).unwrap();
            let rule: Value = serde_yaml_ng::from_str(code).unwrap();
            let mut fixed = np;
            fixed["spec"]["ingress"]
                .as_array_mut()
                .unwrap()
                .push(rule[0].clone());
            let d = evaluate_with(&engine(), &job, &[fixed]);
            assert!(d.violations.is_empty(), "{:#?}", d.violations);
        }

        #[test]
        fn the_submitters_own_egress_counts() {
            let job = filled_job(None);
            let egress_only = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "submitters", "namespace": "kuberay"},
                "spec": {"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "j"}},
                         "policyTypes": ["Egress"], "egress": []}});
            let d = evaluate_with(
                &engine(),
                &job,
                &[selecting("raygate.dev/ray-cr-name", "j"), egress_only],
            );
            let cut: Vec<_> = d
                .violations
                .iter()
                .filter(|v| v.rule.as_str() == RULE)
                .collect();
            assert_eq!(cut.len(), 1, "{:#?}", d.violations);
            assert!(
                cut[0].message.contains("add to NetworkPolicy \"submitters\" an egress rule `- {to: [{podSelector: {matchLabels: {raygate.dev/ray-cr-name: j, ray.io/node-type: head}}}], ports: [{protocol: TCP, port: 8266}]}`"),
                "{}",
                cut[0].message
            );
        }

        /// Judged as written (as `raygate check` judges a file), a head that declares no
        /// ports gets the plan's dashboard filled in: the submitter must reach that number,
        /// not KubeRay's default.
        #[test]
        fn the_dashboard_is_where_the_filled_head_listens() {
            let mut job = ray_job("j");
            job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
                .as_object_mut()
                .unwrap()
                .remove("ports");
            let by_number = |port: u16| {
                let mut np = without_submitter();
                np["spec"]["ingress"].as_array_mut().unwrap().push(json!({
                    "from": [{"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "j"}}}],
                    "ports": [{"protocol": "TCP", "port": port}]
                }));
                np
            };
            let found = |port: u16| -> Vec<String> {
                evaluate_with(&engine(), &job, &[by_number(port)])
                    .violations
                    .iter()
                    .filter(|v| v.rule.as_str() == RULE)
                    .map(|v| v.message.clone())
                    .collect()
            };
            assert!(found(8266).is_empty(), "{:#?}", found(8266));
            let cut = found(8265);
            assert_eq!(cut.len(), 1, "{cut:#?}");
            assert!(cut[0].contains("dashboard on TCP 8266"), "{}", cut[0]);
        }

        #[test]
        fn without_a_submitter_job_there_is_nothing_to_reach() {
            for mode in ["HTTPMode", "SidecarMode", "InteractiveMode"] {
                let job = filled_job(Some(mode));
                let d = evaluate_with(&engine(), &job, &[without_submitter()]);
                assert!(
                    d.violations.iter().all(|v| v.rule.as_str() != RULE),
                    "{mode}: {:#?}",
                    d.violations
                );
            }
            let cluster_only = cluster("j");
            let d = evaluate_with(&engine(), &cluster_only, &[network_policy("j")]);
            assert!(d.violations.iter().all(|v| v.rule.as_str() != RULE));
        }
    }
}

/// Judged at admission, where objects arrive one at a time, and NetworkPolicy changes.
mod network_policy_at_admission {
    use super::*;
    use raygate::engine::NetworkPolicyChange;
    use raygate::rules::network_policy::NetworkPolicies;
    use std::sync::Arc;

    fn arcs(policies: &[Value]) -> Vec<Arc<k8s_openapi::api::networking::v1::NetworkPolicy>> {
        policies
            .iter()
            .map(|p| Arc::new(serde_json::from_value(p.clone()).unwrap()))
            .collect()
    }

    fn at_admission(
        engine: &raygate::Engine,
        object: &Value,
        policies: &[Value],
    ) -> raygate::Decision {
        let policies = arcs(policies);
        let view = ObjectRef::from_value(object).unwrap();
        engine.evaluate(
            &view,
            &Context {
                network_policies: NetworkPolicies::Known(&policies),
                namespace_labels: None,
                pod_cluster: None,
                cluster_origin: None,
                at_admission: true,
                deadline: None,
            },
        )
    }

    fn enforce_on_clusters() -> raygate::Engine {
        let text =
            raygate::policy::BUILT_IN_POLICY.replace("enforceOn: pods", "enforceOn: clusters");
        raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap())
    }

    #[test]
    fn an_uncovered_cluster_is_warned_and_its_pods_are_denied() {
        let d = at_admission(&engine(), &cluster("c"), &[]);
        assert_eq!(
            rules(&d),
            ["network-policy/missing", "network-policy/missing"]
        );
        assert!(d.violations.iter().all(|v| v.action == Action::Warn));
        assert!(d.violations[0].message.contains("its Pods are denied"));
        assert!(d.allowed_as_is());

        for head in [true, false] {
            let d = at_admission(&engine(), &ray_pod("c", head), &[]);
            assert_eq!(rules(&d), ["network-policy/missing"]);
            assert_eq!(d.violations[0].action, Action::Deny);
            assert!(
                d.violations[0].message.contains("ray.io/cluster=c"),
                "{}",
                d.violations[0].message
            );
            assert!(!d.allowed());
            // Once the policy exists, the operator's retry is admitted.
            let d = at_admission(&engine(), &ray_pod("c", head), &[network_policy("c")]);
            assert!(d.violations.is_empty(), "{:#?}", d.violations);
        }
    }

    #[test]
    fn a_pod_behind_a_policy_that_blocks_the_plan_is_denied() {
        let mut np = network_policy("c");
        np["spec"]["ingress"][0]["ports"] = json!([{"port": 8081}]);
        let d = at_admission(&engine(), &ray_pod("c", true), &[np.clone()]);
        assert_eq!(
            rules(&d),
            [
                "network-policy/blocked-ports",
                "network-policy/worker-ports"
            ]
        );
        assert!(
            d.violations[1]
                .message
                .contains("admit `{protocol: TCP, port: 10003, endPort: 19999}`"),
            "{}",
            d.violations[1].message
        );
        assert!(
            d.violations[0].message.contains("6380 (gcs-server)"),
            "{}",
            d.violations[0].message
        );
        // A worker needs only the every-node ports and the ranges.
        let d = at_admission(&engine(), &ray_pod("c", false), &[np]);
        assert!(
            !d.violations[0].message.contains("6380"),
            "{}",
            d.violations[0].message
        );
    }

    /// Worker to head across two policies: the worker Pod's own labels cannot show it, its
    /// live cluster can.
    #[test]
    fn a_pod_is_judged_on_its_live_clusters_whole_coverage() {
        let mut workers = network_policy("c");
        workers["metadata"]["name"] = json!("c-workers");
        workers["spec"]["podSelector"] =
            json!({"matchLabels": {"ray.io/cluster": "c", "ray.io/node-type": "worker"}});
        workers["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
        workers["spec"]["egress"] = json!([
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"podSelector": {"matchLabels": {"ray.io/cluster": "c"}}}],
             "ports": [{"port": 6380}]}
        ]);
        let policies = arcs(&[network_policy("c"), workers]);
        let pod = ray_pod("c", false);
        let view = ObjectRef::from_value(&pod).unwrap();
        let alone = engine().evaluate(
            &view,
            &Context {
                at_admission: true,
                ..Context::complete(&policies)
            },
        );
        let live = cluster("c");
        let with_cluster = engine().evaluate(
            &view,
            &Context {
                at_admission: true,
                pod_cluster: ObjectRef::from_value(&live),
                ..Context::complete(&policies)
            },
        );
        assert!(
            !alone.violations.iter().any(|v| v.message.contains("8266")),
            "{:#?}",
            alone.violations
        );
        let cut: Vec<_> = with_cluster
            .violations
            .iter()
            .filter(|v| v.message.starts_with("its RayCluster \"c\": "))
            .collect();
        assert!(!cut.is_empty(), "{:#?}", with_cluster.violations);
        assert!(
            cut.iter()
                .any(|v| v.message.contains("8266 (dashboard)") && v.message.contains("egress"))
        );
        assert!(!with_cluster.allowed());
    }

    #[test]
    fn offline_checks_and_enforce_on_clusters_deny_the_cluster_itself() {
        assert!(!evaluate_with(&engine(), &cluster("c"), &[]).allowed());
        let engine = enforce_on_clusters();
        let d = at_admission(&engine, &cluster("c"), &[]);
        assert!(d.violations.iter().all(|v| v.action == Action::Deny));
        assert!(!d.allowed());
        // ... and then the Pods are not checked again.
        assert!(
            at_admission(&engine, &ray_pod("c", true), &[])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn pods_are_not_judged_while_policies_are_unknown() {
        let object = ray_pod("c", true);
        let view = ObjectRef::from_value(&object).unwrap();
        let d = engine().evaluate(
            &view,
            &Context {
                at_admission: true,
                ..Context::WITHOUT_CLUSTER
            },
        );
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
    }

    fn change(
        engine: &raygate::Engine,
        deleting: bool,
        by_kubernetes: bool,
        before: &[Value],
        after: &[Value],
    ) -> raygate::Decision {
        let (before, after) = (arcs(before), arcs(after));
        let live = cluster("c");
        let clusters = [ObjectRef::from_value(&live).unwrap()];
        engine.evaluate_network_policy_change(
            &NetworkPolicyChange {
                namespace: "kuberay",
                name: "c-ray",
                deleting,
                creating: false,
                by_kubernetes,
                namespace_labels: None,
                before: &before,
                after: &after,
            },
            &clusters,
        )
    }

    #[test]
    fn deleting_the_covering_policy_of_a_live_cluster_is_warned() {
        let np = network_policy("c");
        let d = change(&engine(), true, false, std::slice::from_ref(&np), &[]);
        assert_eq!(rules(&d), ["network-policy/uncovers-cluster"]);
        assert_eq!(d.violations[0].action, Action::Warn);
        assert!(
            d.violations[0].message.contains(
                "deleting NetworkPolicy \"c-ray\" leaves live RayCluster \"c\" uncovered"
            ),
            "{}",
            d.violations[0].message
        );
        assert!(d.allowed_as_is());

        // Another covering policy keeps it covered.
        let mut other = network_policy("c");
        other["metadata"]["name"] = json!("other");
        assert!(
            change(
                &engine(),
                true,
                false,
                &[np.clone(), other.clone()],
                &[other]
            )
            .violations
            .is_empty()
        );

        // An update that narrows the ports uncovers it too.
        let mut narrowed = np.clone();
        narrowed["spec"]["ingress"][0]["ports"] = json!([{"port": 8081}]);
        let d = change(
            &engine(),
            false,
            false,
            std::slice::from_ref(&np),
            &[narrowed],
        );
        assert_eq!(rules(&d), ["network-policy/uncovers-cluster"]);
        assert!(d.violations[0].message.starts_with("this change to"));
        assert!(d.violations[0].message.contains("blocks TCP"));
    }

    #[test]
    fn the_policy_may_deny_it_but_never_for_kubernetes_own_cleanup() {
        let text = raygate::policy::BUILT_IN_POLICY
            .replace("protectLiveClusters: warn", "protectLiveClusters: deny");
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let np = network_policy("c");
        let d = change(&engine, true, false, std::slice::from_ref(&np), &[]);
        assert_eq!(d.violations[0].action, Action::Deny);
        assert!(!d.allowed_as_is());
        // The namespace controller and the garbage collector are only warned.
        let d = change(&engine, true, true, &[np], &[]);
        assert_eq!(d.violations[0].action, Action::Warn);
        assert!(d.allowed_as_is());
    }
}

mod kinds_and_scope {
    use super::*;

    #[test]
    fn embedded_cluster_specs_are_checked_at_their_paths() {
        let mut spec = cluster("x")["spec"].clone();
        spec["headGroupSpec"]["rayStartParams"]["port"] = json!("6379");
        for (kind, pointer) in [
            ("RayJob", "/spec/rayClusterSpec"),
            ("RayService", "/spec/rayClusterConfig"),
            ("RayCronJob", "/spec/jobTemplate/rayClusterSpec"),
        ] {
            let mut object = json!({"apiVersion": "ray.io/v1", "kind": kind,
                "metadata": {"name": "x", "namespace": "kuberay"}, "spec": {}});
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            if parent != "/spec" {
                object["spec"]["jobTemplate"] = json!({});
            }
            object.pointer_mut(parent).unwrap()[key] = spec.clone();
            let view = ObjectRef::from_value(&object).unwrap();
            let d = engine().evaluate(&view, &Context::WITHOUT_CLUSTER);
            let denied: Vec<_> = d
                .violations
                .iter()
                .filter(|v| v.action == Action::Deny && !v.fillable)
                .collect();
            assert_eq!(denied.len(), 1, "{kind}: {denied:#?}");
            assert_eq!(
                denied[0].path,
                format!("{pointer}/headGroupSpec/rayStartParams/port")
            );
        }
    }

    #[test]
    fn other_objects_are_out_of_scope() {
        let plain_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": "gpu-node", "containers": [{"name": "c", "ports": [{"containerPort": 6379}]}]}});
        let job_with_selector = json!({"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "j"}, "spec": {"clusterSelector": {"ray.io/cluster": "shared"}}});
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        for object in [plain_pod, job_with_selector, config_map] {
            let d = evaluate_with(&engine(), &object, &[]);
            assert_eq!(d.judged, raygate::Judged::OutOfScope, "{object}");
            assert!(d.violations.is_empty());
        }
    }

    #[test]
    fn exempt_namespaces_and_exemptions_come_from_the_policy() {
        let mut c = cluster("legacy");
        c["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(
            evaluate_with(&engine(), &c, &[]).judged,
            raygate::Judged::Exempt
        );

        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "exemptions: []",
            "exemptions: [{namespace: kuberay, kind: RayCluster, name: legacy, families: [network-policy]}]",
        );
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let d = evaluate_with(&engine, &cluster("legacy"), &[]);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        // The exemption also covers the cluster's Pods, and only the named family.
        let mut pod = ray_pod("legacy", true);
        pod["spec"]["nodeName"] = json!("gpu-node");
        assert_eq!(
            rules(&evaluate_with(&engine, &pod, &[])),
            ["placement/node-name"]
        );
        // A label on the object exempts nothing.
        let mut labelled = cluster("other");
        labelled["metadata"]["labels"] = json!({"raygate.dev/exempt": "true"});
        assert!(!evaluate_with(&engine, &labelled, &[]).allowed());
    }

    /// KubeRay names the RayCluster of a RayJob `my-job` like `my-job-x7k2p`: the job's
    /// exemption covers that cluster (by its owner reference) and its Pods (through the
    /// cluster state), or the operator's creates are denied and the job hangs.
    #[test]
    fn an_exempt_rayjob_covers_the_cluster_kuberay_generates_and_its_pods() {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "exemptions: []",
            "exemptions: [{namespace: kuberay, kind: RayJob, name: my-job}]",
        );
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let mut generated = cluster("my-job-x7k2p");
        set(
            &mut generated,
            &format!("{HEAD}/rayStartParams/port"),
            json!("6379"),
        );
        assert!(!evaluate_with(&engine, &generated, &[]).allowed());
        generated["metadata"]["ownerReferences"] = json!([{"apiVersion": "ray.io/v1",
            "kind": "RayJob", "name": "my-job", "uid": "u", "controller": true}]);
        assert_eq!(
            evaluate_with(&engine, &generated, &[]).judged,
            raygate::Judged::Exempt
        );
        // A reference that is not the controller, or not Ray's, exempts nothing.
        generated["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert!(!evaluate_with(&engine, &generated, &[]).allowed());
        // Nor one to a RayService of the job's name, or one without a uid.
        generated["metadata"]["ownerReferences"][0]["controller"] = json!(true);
        generated["metadata"]["ownerReferences"][0]["kind"] = json!("RayService");
        assert!(!evaluate_with(&engine, &generated, &[]).allowed());
        generated["metadata"]["ownerReferences"][0]["kind"] = json!("RayJob");
        generated["metadata"]["ownerReferences"][0]["uid"] = json!("");
        assert!(!evaluate_with(&engine, &generated, &[]).allowed());
        // A RayCluster that merely shares the job's name is not the job.
        let mut namesake = cluster("my-job");
        set(
            &mut namesake,
            &format!("{HEAD}/rayStartParams/port"),
            json!("6379"),
        );
        assert!(!evaluate_with(&engine, &namesake, &[]).allowed());
        // An exemption by name without a kind is refused when the policy loads.
        let loose = raygate::policy::BUILT_IN_POLICY.replace(
            "exemptions: []",
            "exemptions: [{namespace: kuberay, name: my-job}]",
        );
        let err = Policy::from_yaml(&loose, "p.yaml").unwrap_err().to_string();
        assert!(
            err.contains("spec.scope.exemptions[0]: an exemption by name needs its kind"),
            "{err}"
        );

        let mut pod = ray_pod("my-job-x7k2p", false);
        pod["spec"]["nodeName"] = json!("gpu-node");
        let view = ObjectRef::from_value(&pod).unwrap();
        let without = engine.evaluate(&view, &Context::WITHOUT_CLUSTER);
        assert!(!without.allowed());
        let with_origin = engine.evaluate(
            &view,
            &Context {
                cluster_origin: Some(("RayJob", "my-job")),
                ..Context::WITHOUT_CLUSTER
            },
        );
        assert_eq!(with_origin.judged, raygate::Judged::Exempt);
    }

    #[test]
    fn audit_mode_never_denies_and_never_patches() {
        let engine = raygate::Engine::new(Policy::built_in().with_mode(Mode::Audit));
        let mut c = cluster("c");
        remove(&mut c, &format!("{WORKER_POD}/nodeSelector"));
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0/containerPort"),
            json!(6379),
        );
        let d = evaluate_with(&engine, &c, &[]);
        assert!(d.allowed() && d.allowed_as_is());
        assert!(d.patch.0.is_empty());
        assert!(d.violations.iter().all(|v| !v.fillable));
        assert!(
            d.violations
                .iter()
                .any(|v| v.rule.as_str() == "placement/not-pinned-to-workers")
        );
    }

    #[test]
    fn an_audit_namespace_is_reported_never_denied_while_others_are_enforced() {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "    auditNamespaces: []",
            "    auditNamespaces: [ray-trial]",
        );
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD_RAY}/ports/0/containerPort"),
            json!(6379),
        );
        let enforced = evaluate_with(&engine, &c, &[network_policy("c")]);
        assert_eq!(enforced.mode, Mode::Enforce);
        assert!(!enforced.allowed());

        c["metadata"]["namespace"] = json!("ray-trial");
        let mut policy = network_policy("c");
        policy["metadata"]["namespace"] = json!("ray-trial");
        let audited = evaluate_with(&engine, &c, &[policy]);
        assert_eq!(audited.mode, Mode::Audit);
        assert!(audited.allowed() && audited.patch.0.is_empty());
        assert_eq!(rules(&audited), rules(&enforced));
    }

    #[test]
    fn a_rule_switched_off_neither_reports_nor_fills() {
        let text = raygate::policy::BUILT_IN_POLICY.replace(
            "ports/serve-port-name: warn",
            "ports/serve-port-name: warn\n    placement/not-pinned-to-workers: off",
        );
        let engine = raygate::Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap());
        let mut c = cluster("c");
        remove(&mut c, &format!("{WORKER_POD}/nodeSelector"));
        let d = evaluate_with(&engine, &c, &[network_policy("c")]);
        assert!(!rules(&d).contains(&"placement/not-pinned-to-workers"));
        assert!(d.patch.0.is_empty());
    }
}

/// UPDATEs are judged against the object they replace and never re-plan a live cluster.
mod updates {
    use super::*;

    fn update(new: &Value, old: &Value) -> raygate::Decision {
        let policies = vec![std::sync::Arc::new(
            serde_json::from_value(network_policy("c")).unwrap(),
        )];
        let new_view = ObjectRef::from_value(new).unwrap();
        let old_view = ObjectRef::from_value(old).unwrap();
        engine().evaluate_update(&new_view, &old_view, &Context::complete(&policies))
    }

    /// A cluster created before raygate (or in audit mode), on KubeRay's defaults.
    fn legacy() -> Value {
        let mut c = cluster("c");
        set(
            &mut c,
            &format!("{HEAD}/rayStartParams/port"),
            json!("6379"),
        );
        remove(&mut c, &format!("{HEAD}/rayStartParams/dashboard-port"));
        remove(&mut c, &format!("{WORKER}/rayStartParams/min-worker-port"));
        c
    }

    #[test]
    fn scaling_a_non_compliant_cluster_is_never_denied_or_patched() {
        let old = legacy();
        assert!(!evaluate(&old).allowed());
        let mut new = old.clone();
        set(&mut new, &format!("{WORKER}/replicas"), json!(3));
        new.pointer_mut(WORKER).unwrap()["scaleStrategy"] =
            json!({"workersToDelete": ["c-worker-x"]});
        new["spec"]["suspend"] = json!(false);
        new["metadata"]["finalizers"] = json!(["ray.io/gcs-ft-redis-cleanup-finalizer"]);
        new["status"] = json!({"state": "ready"});
        let d = update(&new, &old);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        assert!(d.patch.0.is_empty());
    }

    #[test]
    fn what_the_old_object_already_broke_is_only_warned_and_never_filled() {
        let old = legacy();
        let mut new = old.clone();
        // An unrelated edit: a new environment variable on the workers.
        new.pointer_mut(WORKER_RAY).unwrap()["env"] = json!([{"name": "A", "value": "1"}]);
        let d = update(&new, &old);
        assert!(d.allowed_as_is() && d.allowed(), "{:#?}", d.violations);
        assert!(
            d.patch.0.is_empty(),
            "a live head on 6379 must not get port 6380: {:?}",
            d.patch
        );
        let ratcheted: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.action == Action::Warn)
            .collect();
        assert_eq!(ratcheted.len(), 3, "{:#?}", d.violations);
        assert!(
            ratcheted
                .iter()
                .all(|v| v.message.contains("already so before this update"))
        );
    }

    #[test]
    fn what_an_update_newly_breaks_is_denied() {
        let old = legacy();
        let mut new = old.clone();
        set(
            &mut new,
            &format!("{WORKER}/rayStartParams/object-manager-port"),
            json!("9000"),
        );
        let d = update(&new, &old);
        let denied: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.action == Action::Deny)
            .collect();
        assert_eq!(denied.len(), 1, "{:#?}", d.violations);
        assert_eq!(denied[0].rule.as_str(), "ports/node-port-range");
        assert!(!d.allowed());
        // Nothing is filled on an update, so a new missing value is denied, not promised.
        let mut new = old.clone();
        remove(&mut new, &format!("{HEAD_RAY}/resources/limits"));
        let d = update(&new, &cluster("c"));
        assert!(
            d.violations
                .iter()
                .any(|v| v.rule.as_str() == "resources/missing"
                    && v.action == Action::Deny
                    && !v.fillable)
        );
    }

    /// Ratcheting is per field: a cluster that lacked one key before raygate cannot move its
    /// other ports in the same update under cover of that old finding.
    #[test]
    fn an_old_missing_key_does_not_cover_ports_the_update_moves() {
        let mut old = cluster("c");
        remove(
            &mut old,
            &format!("{HEAD}/rayStartParams/dashboard-agent-grpc-port"),
        );
        let mut new = old.clone();
        set(
            &mut new,
            &format!("{HEAD}/rayStartParams/port"),
            json!("31337"),
        );
        set(
            &mut new,
            &format!("{HEAD}/rayStartParams/dashboard-port"),
            json!("31337"),
        );
        let d = update(&new, &old);
        let denied: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.action == Action::Deny)
            .map(|v| v.path.as_str())
            .collect();
        assert!(
            denied.contains(&format!("{HEAD}/rayStartParams/port").as_str())
                && denied.contains(&format!("{HEAD}/rayStartParams/dashboard-port").as_str()),
            "{:#?}",
            d.violations
        );
        assert!(!d.allowed());
        // The key that was already missing stays a warning.
        assert!(d.violations.iter().any(|v| v.action == Action::Warn
            && v.path == format!("{HEAD}/rayStartParams")
            && v.message.contains("dashboard-agent-grpc-port")));
    }

    #[test]
    fn a_value_an_apply_dropped_is_restored_from_the_old_object() {
        // Server-side apply of the original manifest drops what the webhook filled in.
        let old = cluster("c");
        let mut new = old.clone();
        remove(&mut new, &format!("{HEAD}/rayStartParams/dashboard-port"));
        remove(&mut new, &format!("{HEAD}/rayStartParams/min-worker-port"));
        remove(&mut new, &format!("{HEAD_RAY}/ports/1"));
        let d = update(&new, &old);
        assert!(d.violations.is_empty(), "{:#?}", d.violations);
        let restored = apply(&new, &d.patch);
        let head = restored.pointer(HEAD).unwrap();
        assert_eq!(head["rayStartParams"]["dashboard-port"], "8266");
        assert_eq!(head["rayStartParams"]["min-worker-port"], "10003");
        assert!(
            head["template"]["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "client" && p["containerPort"] == 10002)
        );
    }

    #[test]
    fn an_object_being_deleted_is_never_denied() {
        let old = legacy();
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!("2026-11-29T07:00:00Z");
        new["metadata"]["finalizers"] = json!([]);
        set(&mut new, &format!("{HEAD}/rayStartParams/port"), json!("1"));
        let d = update(&new, &old);
        assert!(
            d.violations.is_empty() && d.patch.0.is_empty(),
            "{:#?}",
            d.violations
        );
    }

    #[test]
    fn a_rayservice_created_before_raygate_gets_no_fill_that_would_change_its_hash() {
        let mut spec = legacy()["spec"].clone();
        spec["headGroupSpec"]["template"]["metadata"] = json!({"labels": {"app": "web"}});
        let old = json!({"apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": {"name": "web", "namespace": "kuberay"},
            "spec": {"serveConfigV2": "applications: []", "rayClusterConfig": spec}});
        let mut new = old.clone();
        new["spec"]["serveConfigV2"] = json!("applications: [{name: a}]");
        let d = update(&new, &old);
        assert!(d.patch.0.is_empty(), "{:?}", d.patch);
        assert!(d.allowed_as_is(), "{:#?}", d.violations);
    }
}

mod gpu_and_submitter {
    use super::*;

    #[test]
    fn a_zero_gpu_in_any_notation_unlocks_no_master() {
        for zero in [
            json!("0.0"),
            json!("0m"),
            json!(0),
            json!("0"),
            json!("none"),
        ] {
            let mut c = cluster("c");
            let pod = c.pointer_mut(WORKER_POD).unwrap();
            pod["tolerations"] =
                json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]);
            pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = zero.clone();
            let d = evaluate(&c);
            assert!(
                d.violations
                    .iter()
                    .any(|v| v.rule.as_str() == "placement/tolerates-control-plane"),
                "{zero}: {:#?}",
                d.violations
            );
        }
    }

    #[test]
    fn a_rayjobs_submitter_pod_is_placed_and_sized_like_ray_pods() {
        let spec = cluster("j")["spec"].clone();
        let job = json!({"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "j", "namespace": "kuberay"},
            "spec": {"entrypoint": "python x.py", "rayClusterSpec": spec,
                "submitterPodTemplate": {"spec": {"nodeName": "gpu-node", "restartPolicy": "Never",
                    "containers": [{"name": "submitter", "image": "rayproject/ray:2.60.0"}]}}}});
        let mut np = network_policy("j");
        let selector = json!({"matchLabels": {"raygate.dev/ray-cr-name": "j"}});
        np["spec"]["podSelector"] = selector.clone();
        np["spec"]["ingress"][0]["from"][0]["podSelector"] = selector;
        let d = evaluate_with(&engine(), &job, &[np]);
        let at_submitter: Vec<_> = d
            .violations
            .iter()
            .filter(|v| v.path.starts_with("/spec/submitterPodTemplate/spec"))
            .map(|v| v.rule.as_str())
            .collect();
        assert_eq!(
            at_submitter,
            ["placement/node-name", "resources/missing"],
            "{:#?}",
            d.violations
        );
        assert!(
            d.violations[0].message.contains("submitter pod template")
                || d.violations
                    .iter()
                    .any(|v| v.message.contains("submitter pod template"))
        );
    }
}
