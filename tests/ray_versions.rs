//! Each Ray group is judged by the Ray it runs: one test per version-dependent fact of
//! policies/ray-versions.json, on a compliant cluster moved to another Ray.

mod support;

use raygate::ray_version::{Pin, RayFacts, RayOf, parse_version};
use serde_json::{Value, json};
use support::*;

/// The compliant cluster, every group on `image`, with `rayVersion` as given (removed if None).
fn cluster_on(image: &str, ray_version: Option<&str>) -> Value {
    let mut c = cluster("c");
    set(&mut c, &format!("{HEAD_RAY}/image"), image.into());
    set(&mut c, &format!("{WORKER_RAY}/image"), image.into());
    match ray_version {
        Some(v) => set(&mut c, "/spec/rayVersion", v.into()),
        None => remove(&mut c, "/spec/rayVersion"),
    }
    c
}

fn messages(d: &raygate::Decision, rule: &str) -> Vec<String> {
    d.violations
        .iter()
        .filter(|v| v.rule.as_str() == rule)
        .map(|v| format!("{} {}", v.path, v.message))
        .collect()
}

fn facts(version: &str) -> &'static raygate::ray_version::VersionFacts {
    RayFacts::get()
        .for_version(parse_version(version).unwrap())
        .0
}

#[test]
fn an_option_is_judged_by_the_groups_own_ray() {
    // KubeRay's resource-isolation samples: an option Ray 2.9.3's `ray start` lacks.
    let mut old = cluster_on("rayproject/ray:2.9.3", None);
    let mut new = cluster_on("rayproject/ray:2.60.0", None);
    for c in [&mut old, &mut new] {
        let params = &mut c["spec"]["headGroupSpec"]["rayStartParams"];
        params["enable-resource-isolation"] = "true".into();
        params["dashboard-grpc-port"] = "8602".into();
    }
    let old = evaluate(&old);
    let found = messages(&old, "ports/start-command");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains(
            "`ray start` of Ray 2.9.3 (image tag) has no option --enable-resource-isolation"
        ) && found[0].contains("Ray 2.46.0 is the first that has it"),
        "{}",
        found[0]
    );
    let new = evaluate(&new);
    let found = messages(&new, "ports/start-command");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .contains("`ray start` of Ray 2.60.0 (image tag) has no option --dashboard-grpc-port")
            && found[0].contains("Ray 2.46.0 is the last that has it"),
        "{}",
        found[0]
    );
}

#[test]
fn the_dashboard_grpc_port_is_filled_only_on_a_head_whose_ray_opens_it_at_random() {
    for version in RayFacts::get().versions() {
        let image = format!("rayproject/ray:{}", version.version);
        let d = evaluate(&cluster_on(&image, None));
        let filled = d.patch.0.iter().any(|op| {
            serde_json::to_value(op).unwrap()["path"]
                == format!("{HEAD}/rayStartParams/dashboard-grpc-port")
        });
        let random = version.random_listener("dashboard-grpc-port").is_some();
        assert_eq!(
            filled, random,
            "Ray {}: {:#?}",
            version.version, d.violations
        );
        if random {
            let found = messages(&d, "ports/ray-start-param");
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(
                found[0].contains(&format!(
                    "Ray {} (image tag) picks a random port for the dashboard head's gRPC server",
                    version.version
                )),
                "{}",
                found[0]
            );
        } else {
            assert!(
                d.violations.is_empty(),
                "Ray {}: {:#?}",
                version.version,
                d.violations
            );
        }
        // Never on a worker: only the head runs the dashboard.
        assert!(!d.patch.0.iter().any(|op| {
            serde_json::to_value(op).unwrap()["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(WORKER))
        }));
    }
}

#[test]
fn the_default_worker_range_is_named_with_its_ray() {
    let mut c = cluster_on("rayproject/ray:2.9.3", None);
    remove(&mut c, &format!("{HEAD}/rayStartParams/min-worker-port"));
    remove(&mut c, &format!("{HEAD}/rayStartParams/max-worker-port"));
    let d = evaluate(&c);
    let found = messages(&d, "ports/worker-port-overlap");
    let range = facts("2.9.3").worker_ports;
    assert!(
        found.iter().any(|m| m.contains(&format!(
            "so Ray 2.9.3 (image tag) gives worker processes {}-{}",
            range.from, range.to
        ))),
        "{found:#?}"
    );
}

#[test]
fn the_version_comes_from_the_image_tag_then_ray_version_then_the_policy() {
    // A rayproject image's tag is what runs, even when rayVersion says otherwise.
    let d = evaluate(&cluster_on("rayproject/ray:2.9.3-py310", Some("2.60.0")));
    assert!(
        rules(&d).contains(&"ports/ray-start-param"),
        "{:#?}",
        d.violations
    );
    // Another image: rayVersion says which Ray it holds.
    let d = evaluate(&cluster_on("example.com/team/ray-app:7", Some("2.9.3")));
    let found = messages(&d, "ports/ray-start-param");
    assert!(
        found.iter().any(|m| m.contains("Ray 2.9.3 (rayVersion)")),
        "{found:#?}"
    );
    // Neither: the policy's default, 2.60.0, which opens no dashboard gRPC server.
    let d = evaluate(&cluster_on("example.com/team/ray-app:7", None));
    assert!(d.violations.is_empty(), "{:#?}", d.violations);
    let ray = RayOf::resolve(
        Some("example.com/team/ray-app:7"),
        None,
        parse_version("2.41.0").unwrap(),
    );
    assert_eq!(ray.name(), "Ray 2.41.0 (the policy's default)");
}

#[test]
fn an_unmeasured_ray_is_judged_by_the_nearest_one_with_a_warning() {
    let newest = RayFacts::get().newest().version;
    let oldest = RayFacts::get().oldest().version;
    for (image, ray_version, judged_as) in [
        ("rayproject/ray:2.99.0", None, newest),
        ("rayproject/ray:nightly", None, newest),
        ("example.com/ray-app:7", Some("2.5.0"), oldest),
    ] {
        let d = evaluate(&cluster_on(image, ray_version));
        let found = messages(&d, "ports/unmeasured-ray");
        assert!(!found.is_empty(), "{image}: {:#?}", d.violations);
        assert!(
            found
                .iter()
                .all(|m| m.contains(&format!("judged as Ray {judged_as}'s"))),
            "{found:#?}"
        );
        assert!(
            d.violations
                .iter()
                .filter(|v| v.rule.as_str() == "ports/unmeasured-ray")
                .all(|v| v.action == raygate::Action::Warn)
        );
        assert!(d.allowed(), "{image}: {:#?}", d.violations);
    }
    // A release between two measured ones is judged by the older, without a warning.
    let d = evaluate(&cluster_on("rayproject/ray:2.56.0", None));
    assert!(d.violations.is_empty(), "{:#?}", d.violations);
}

#[test]
fn serves_default_port_is_named_with_its_ray() {
    let mut service = json!({
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": "s", "namespace": "kuberay"},
        "spec": {"serveConfigV2": "applications: []\n", "rayClusterConfig": cluster_on("rayproject/ray:2.9.3", None)["spec"].clone()}
    });
    let d = evaluate(&service);
    let found = messages(&d, "ports/serve-config");
    let port = facts("2.9.3").serve_http_port;
    assert!(
        found
            .iter()
            .any(|m| m.contains(&format!("Serve listens on {port} (Ray 2.9.3 (image tag))"))),
        "{found:#?}"
    );
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] =
        "rayproject/ray:2.60.0".into();
    let found = messages(&evaluate(&service), "ports/serve-config");
    assert!(
        found.iter().any(|m| m.contains("(Ray 2.60.0 (image tag))")),
        "{found:#?}"
    );
}

#[test]
fn a_pin_applies_where_the_ray_opens_the_listener_and_can_set_it() {
    let (old, new) = (facts("2.9.3"), facts("2.60.0"));
    // Random in every measured Ray: pinned on every node.
    for f in [old, new] {
        assert_eq!(f.pin("dashboard-agent-grpc-port", false), Pin::Applies);
    }
    assert_eq!(old.pin("dashboard-grpc-port", true), Pin::Applies);
    assert_eq!(old.pin("dashboard-grpc-port", false), Pin::NotOpened);
    // Gone with its flag.
    assert_eq!(new.pin("dashboard-grpc-port", true), Pin::NotOpened);
    // An option newer than the Ray: it cannot be set, and the first Ray that can is named.
    assert_eq!(
        old.pin("include-log-monitor", true),
        Pin::CannotSet(RayFacts::get().span_of("include-log-monitor").map(|s| s.0))
    );
    assert_eq!(old.pin("no-such-port", true), Pin::CannotSet(None));
}

#[test]
fn a_plan_pin_that_no_measured_ray_can_set_is_denied_with_the_reason() {
    let mut policy: Value = serde_yaml_ng::from_str(raygate::policy::BUILT_IN_POLICY).unwrap();
    policy["spec"]["ports"]["nodePorts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "future", "port": 8603, "rayStartParam": "future-agent-port"}));
    let policy =
        raygate::Policy::from_yaml(&serde_yaml_ng::to_string(&policy).unwrap(), "test policy")
            .expect("a valid policy");
    let engine = raygate::Engine::new(policy);
    let d = evaluate_with(&engine, &cluster("c"), &[network_policy("c")]);
    let found = messages(&d, "ports/ray-start-param");
    assert!(
        found.iter().any(|m| m
            .contains("the plan pins future-agent-port to 8603, but `ray start` of Ray 2.52.0")
            && m.contains("no measured Ray can")),
        "{found:#?}"
    );
    assert!(!d.allowed());
}

#[test]
fn the_generated_network_policy_admits_the_ports_of_the_rays_the_groups_run() {
    let ports = |image: &str| -> Vec<u64> {
        let c = cluster_on(image, None);
        let view = raygate::ray::ObjectRef::from_value(&c).unwrap();
        let raygate::ray::Target::Cluster(spec) = raygate::ray::Target::of(&view) else {
            panic!("a cluster")
        };
        let generated = raygate::rules::network_policy::generate(
            &spec,
            Some("kuberay"),
            &raygate::Policy::built_in(),
            &[],
        )
        .unwrap();
        generated.object["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_u64())
            .collect()
    };
    assert!(ports("rayproject/ray:2.9.3").contains(&8602));
    assert!(!ports("rayproject/ray:2.60.0").contains(&8602));
}

#[test]
fn every_measured_ray_takes_every_pin_of_the_built_in_plan_but_the_dashboards_own() {
    let policy = raygate::Policy::built_in();
    let ports = &policy.spec().ports;
    let keys: Vec<&str> = ports
        .planned
        .iter()
        .filter_map(|p| p.ray_start_param.as_deref())
        .chain(ports.node_ports.iter().map(|p| p.ray_start_param.as_str()))
        .chain(ports.node_ranges.iter().map(|r| r.ray_start_param.as_str()))
        .chain(["min-worker-port", "max-worker-port"])
        .filter(|k| *k != "dashboard-grpc-port")
        .collect();
    for version in RayFacts::get().versions() {
        for key in &keys {
            assert_eq!(
                version.pin(key, true),
                Pin::Applies,
                "Ray {}: --{key}",
                version.version
            );
        }
        let dashboard = version.pin("dashboard-grpc-port", true);
        assert_eq!(
            dashboard == Pin::Applies,
            version.random_listener("dashboard-grpc-port").is_some(),
            "Ray {}",
            version.version
        );
    }
}

#[test]
fn every_fixed_port_only_a_head_opens_is_on_the_plan() {
    let policy = raygate::Policy::built_in();
    let ports = &policy.spec().ports;
    for version in RayFacts::get().versions() {
        for listener in &version.head_only_listeners {
            let planned = ports.head_ports.iter().any(|p| p.port == listener.port)
                || ports.planned.iter().any(|p| p.port == listener.port);
            assert!(
                planned,
                "Ray {} opens {} on the head at {}, which the plan does not list",
                version.version, listener.what, listener.port
            );
        }
    }
}

#[test]
fn an_autoscaler_is_told_the_gcs_port_only_on_a_ray_whose_autoscaler_takes_it() {
    for version in RayFacts::get().versions() {
        let image = format!("rayproject/ray:{}", version.version);
        let mut c = cluster_on(&image, None);
        c["spec"]["enableInTreeAutoscaling"] = true.into();
        let d = evaluate(&c);
        let denied = messages(&d, "ports/autoscaler-gcs-port");
        let takes = version
            .kuberay_autoscaler_options
            .iter()
            .any(|o| o == "--gcs-address");
        assert_eq!(
            denied.is_empty(),
            takes,
            "Ray {}: {denied:#?}",
            version.version
        );
        let first = RayFacts::get()
            .first_autoscaler_with("--gcs-address")
            .unwrap();
        assert!(
            denied
                .iter()
                .all(|m| m.contains(&format!("needs Ray {first} or later"))),
            "{denied:#?}"
        );
    }
}

/// A tenant's `rayVersion` cannot leave a Ray 2.9.3 head's random dashboard gRPC port unpinned:
/// the image runs, so mutate fills the pin in, and the patched object then validates clean.
#[test]
fn a_ray_version_that_lies_about_the_image_does_not_unpin_the_head() {
    let c = cluster_on("rayproject/ray:2.9.3", Some("2.60.0"));
    let d = evaluate(&c);
    assert!(!d.allowed_as_is(), "{:#?}", d.violations);
    let patched = apply(&c, &d.patch);
    assert_eq!(
        patched["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-grpc-port"],
        "8602"
    );
    let again = evaluate(&patched);
    assert!(again.violations.is_empty(), "{:#?}", again.violations);
    assert!(again.patch.0.is_empty());
}
