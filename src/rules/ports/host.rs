//! Host exposure: `hostNetwork`, `hostPort` and NodePort or LoadBalancer Services open Ray's
//! ports on the node itself (every node, for a NodePort, the masters included), where no
//! NetworkPolicy applies and the port plan means nothing. Denied unless the policy allows it
//! in the namespace (`ports.hostExposure.allowedNamespaces`).

use crate::rule_id::RuleId;
use serde_json::Value;

use crate::ray::{ClusterSource, ClusterSpec, PodSpecRef, child};
use crate::rules::Findings;

const EXPOSING_TYPES: &[&str] = &["NodePort", "LoadBalancer"];

pub fn check_pod_spec(pod: &PodSpecRef<'_>, subject: &str, out: &mut Findings<'_>) {
    if pod.field("hostNetwork").and_then(Value::as_bool) == Some(true) {
        out.report(RuleId::HostNetwork, &child(&pod.path, "hostNetwork"), || {
            format!(
                "{subject} sets hostNetwork: true, so Ray binds its ports on the node itself, outside the port plan and every NetworkPolicy; remove hostNetwork"
            )
        });
    }
    for container in pod.all_containers() {
        for (i, port) in container.ports().into_iter().flatten().enumerate() {
            let Some(host_port) = port.get("hostPort").filter(|p| !is_zero(p)) else {
                continue;
            };
            let path = pod.port_path(&container, i, "hostPort");
            out.report(RuleId::HostPort, &path, || {
                format!(
                    "{} of the {subject} maps hostPort {host_port} onto its node, outside every NetworkPolicy; remove hostPort",
                    container.describe()
                )
            });
        }
    }
}

fn is_zero(value: &Value) -> bool {
    value.as_u64() == Some(0) || value.as_str().is_some_and(|s| s.trim() == "0")
}

/// The head Service (and a RayService's Serve Service) must stay inside the cluster.
pub fn check_services(cluster: &ClusterSpec<'_>, out: &mut Findings<'_>) {
    let head_path = child(&cluster.path, "headGroupSpec");
    let head = cluster.spec.get("headGroupSpec");
    if let Some(kind) = head
        .and_then(|h| h.get("serviceType"))
        .and_then(Value::as_str)
        .filter(|t| EXPOSING_TYPES.contains(t))
    {
        out.report(RuleId::NodePortService, &child(&head_path, "serviceType"), || {
            format!(
                "headGroupSpec.serviceType is {kind}, which opens the head's ports on every node, the masters included; use ClusterIP (the default)"
            )
        });
    }
    if let Some(service) = head.and_then(|h| h.get("headService")) {
        check_service(
            service,
            &child(&head_path, "headService"),
            "head Service",
            out,
        );
    }
    if cluster.source == ClusterSource::RayService {
        // Sits beside the cluster spec, at the RayService's own spec.
        let path = json_patch::jsonptr::PointerBuf::from_tokens(["spec", "serveService"]);
        if let Some(service) = cluster.root.pointer("/spec/serveService") {
            check_service(service, &path, "Serve Service", out);
        }
    }
}

fn check_service(
    service: &Value,
    path: &json_patch::jsonptr::PointerBuf,
    what: &str,
    out: &mut Findings<'_>,
) {
    let spec_path = child(path, "spec");
    if let Some(kind) = service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .filter(|t| EXPOSING_TYPES.contains(t))
    {
        out.report(RuleId::NodePortService, &child(&spec_path, "type"), || {
            format!(
                "the {what} has type {kind}, which opens Ray's ports on every node, the masters included; use ClusterIP"
            )
        });
    }
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    for (i, port) in ports.into_iter().flatten().enumerate() {
        if let Some(node_port) = port.get("nodePort").filter(|p| !is_zero(p)) {
            let at = child(
                &child(&child(&spec_path, "ports"), &i.to_string()),
                "nodePort",
            );
            out.report(RuleId::NodePortService, &at, || {
                format!(
                    "the {what} asks for nodePort {node_port}, open on every node; remove nodePort"
                )
            });
        }
    }
    for field in ["externalIPs"] {
        if service
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            out.report(RuleId::NodePortService, &child(&spec_path, field), || {
                format!("the {what} sets {field}, which nodes answer on; remove it")
            });
        }
    }
}
