//! The in-tree autoscaler's GCS address. KubeRay v1.5.0 starts the `autoscaler` container of
//! the head with `ray kuberay-autoscaler --cluster-name ... --cluster-namespace ...` and gives
//! no way to add to it; Ray's `run_kuberay_autoscaler` then connects to GCS at
//! `<node IP>:6379` unless `--gcs-address` says otherwise (ray-project/kuberay#1644,
//! ray-project/ray#41072). With the GCS on another port the autoscaler retries forever.
//! `--gcs-address` first exists in Ray 2.60.0 of the measured Rays (policies/ray-versions.json,
//! `kuberayAutoscalerOptions`): raygate appends it to the head Pod's autoscaler
//! container, and denies an autoscaler of an older Ray, whose GCS port cannot be told.

use crate::rule_id::RuleId;
use serde_json::Value;

use crate::ray::{ClusterSpec, PodSpecRef, Role, child};
use crate::ray_version::{RayFacts, RayVersion, image_version, parse_version};
use crate::rules::Findings;

/// KubeRay's name for the autoscaler container (`common.AutoscalerContainerName`).
const AUTOSCALER_CONTAINER: &str = "autoscaler";
/// What KubeRay's autoscaler arguments run.
const AUTOSCALER_COMMAND: &str = "ray kuberay-autoscaler";
const GCS_ADDRESS: &str = "--gcs-address";
/// Where `ray kuberay-autoscaler` looks for GCS unless told (Ray 2.60.0, `run_autoscaler.py`).
const AUTOSCALER_GCS_DEFAULT: u32 = 6379;
/// The first measured Ray whose `ray kuberay-autoscaler` takes `--gcs-address`
/// (policies/ray-versions.json; 2.60.0 of those measured).
fn first_tellable() -> RayVersion {
    let facts = RayFacts::get();
    facts
        .first_autoscaler_with(GCS_ADDRESS)
        .unwrap_or(facts.newest().version)
}

/// Whether the autoscaler of `version` can be told the GCS address, by its measured facts.
fn tellable(version: RayVersion) -> bool {
    let (facts, _) = RayFacts::get().for_version(version);
    facts
        .kuberay_autoscaler_options
        .iter()
        .any(|o| o == GCS_ADDRESS)
}

fn explain(port: u32) -> String {
    let first = first_tellable();
    format!(
        "KubeRay v1.5.0 starts the autoscaler as `{AUTOSCALER_COMMAND}`, which connects to GCS at {AUTOSCALER_GCS_DEFAULT}, but the head's GCS listens on {port}, and before Ray {first} the autoscaler cannot be told the GCS port (`{GCS_ADDRESS}`), so it never connects"
    )
}

/// A cluster with in-tree autoscaling whose head's GCS is not on 6379 needs Ray 2.60.0 or later
/// in the autoscaler image (`autoscalerOptions.image`, else the head's image): denied early,
/// at `kubectl apply`, when the image's tag or `rayVersion` says an older Ray.
/// `head_gcs`: the head's GCS port once this admission's patch is applied.
pub fn check_cluster(cluster: &ClusterSpec<'_>, head_gcs: Option<u32>, out: &mut Findings<'_>) {
    if !cluster.autoscaling() || !out.enabled(RuleId::AutoscalerGcsPort) {
        return;
    }
    let Some(port) = head_gcs.filter(|p| *p != AUTOSCALER_GCS_DEFAULT) else {
        return;
    };
    let options_image = cluster
        .spec
        .pointer("/autoscalerOptions/image")
        .and_then(Value::as_str);
    let head_image = cluster
        .spec
        .pointer("/headGroupSpec/template/spec/containers/0/image")
        .and_then(Value::as_str);
    let options_path = child(&cluster.path, "autoscalerOptions");
    // KubeRay runs the autoscaler from autoscalerOptions.image, else the head's image.
    let (image, image_path) = match (options_image, head_image) {
        (Some(image), _) => (Some(image), child(&options_path, "image")),
        (None, image) => (
            image,
            [
                "headGroupSpec",
                "template",
                "spec",
                "containers",
                "0",
                "image",
            ]
            .into_iter()
            .fold(cluster.path.clone(), |path, token| child(&path, token)),
        ),
    };
    let from_image = image.and_then(|i| image_version(i).map(|v| (i, v)));
    let (version, path, source) = match from_image {
        Some((image, version)) => {
            let whose = if options_image.is_some() {
                format!("autoscalerOptions.image {image}")
            } else {
                format!(
                    "the head's image {image}, which KubeRay uses without autoscalerOptions.image"
                )
            };
            (version, image_path, whose)
        }
        None => {
            let Some((text, version)) = cluster
                .spec
                .get("rayVersion")
                .and_then(Value::as_str)
                .and_then(|t| parse_version(t).map(|v| (t, v)))
            else {
                return;
            };
            (
                version,
                child(&cluster.path, "rayVersion"),
                format!("rayVersion {text:?}"),
            )
        }
    };
    if tellable(version) {
        return;
    }
    out.report(RuleId::AutoscalerGcsPort, &path, || {
        let first = first_tellable();
        format!(
            "enableInTreeAutoscaling runs the autoscaler on Ray {version} ({source}): {}; in-tree autoscaling needs Ray {first} or later in the autoscaler image: set autoscalerOptions.image to one (e.g. rayproject/ray:{first})",
            explain(port)
        )
    });
}

/// The head Pod's `autoscaler` container, as KubeRay built it: told the head's GCS port
/// (`gcs`, from the Ray container's effective `ray start`) by `--gcs-address`, filled in,
/// unless its image is a Ray that cannot take it.
pub fn check_pod(pod: &PodSpecRef<'_>, role: Role, gcs: Option<u32>, out: &mut Findings<'_>) {
    if role != Role::Head || !out.enabled(RuleId::AutoscalerGcsPort) {
        return;
    }
    let Some(port) = gcs.filter(|p| *p != AUTOSCALER_GCS_DEFAULT) else {
        return;
    };
    let Some(container) = pod.containers().find(|c| c.name == AUTOSCALER_CONTAINER) else {
        return;
    };
    let Some(args) = container.value.get("args").and_then(Value::as_array) else {
        return;
    };
    let told = |arg: &Value| arg.as_str().is_some_and(|a| a.contains(GCS_ADDRESS));
    if args.iter().any(told) {
        return;
    }
    let Some(i) = args
        .iter()
        .position(|a| a.as_str().is_some_and(|a| a.contains(AUTOSCALER_COMMAND)))
    else {
        return;
    };
    let container_path = pod.container_path(&container);
    let image = container.value.get("image").and_then(Value::as_str);
    if let Some((image, version)) = image.and_then(|i| image_version(i).map(|v| (i, v)))
        && !tellable(version)
    {
        out.report(RuleId::AutoscalerGcsPort, &child(&container_path, "image"), || {
            let first = first_tellable();
            format!(
                "the autoscaler container runs {image} (Ray {version}): {}; in-tree autoscaling needs Ray {first} or later in the autoscaler image: set the RayCluster's autoscalerOptions.image to one (e.g. rayproject/ray:{first})",
                explain(port)
            )
        });
        return;
    }
    let address = format!(" {GCS_ADDRESS}=127.0.0.1:{port}");
    let args_path = child(&container_path, "args");
    out.report_fillable(RuleId::AutoscalerGcsPort, &child(&args_path, &i.to_string()), || {
        format!(
            "the autoscaler container runs `{AUTOSCALER_COMMAND}` without {GCS_ADDRESS}, so it connects to GCS at <node IP>:{AUTOSCALER_GCS_DEFAULT} (KubeRay v1.5.0, Ray {}), but the head's GCS listens on {port}; append `{}` to its args (Ray reads 127.0.0.1 as the node's address)",
            first_tellable(),
            address.trim_start()
        )
    });
    let mut filled = args.clone();
    if let Some(Value::String(arg)) = filled.get_mut(i) {
        arg.push_str(&address);
    }
    out.fill(args_path, Value::Array(filled));
}
