//! A RayService's `serveConfigV2`: Serve must listen where KubeRay's Serve Service sends
//! traffic (the planned Serve port), and its gRPC proxy must keep off the plan's ports. The
//! config is text the user wrote, so raygate never edits it: it says exactly what to add.

use std::fmt;

use json_patch::jsonptr::PointerBuf;
use serde_json::Value;

use super::SERVE_PORT;
use crate::policy::{NodePortRange, PortPolicy, PortRange};
use crate::ray::{ClusterSpec, as_port};
use crate::ray_version::RayOf;
use crate::rule_id::RuleId;
use crate::rules::Findings;

/// A RayService's `serveConfigV2`, judged by the Ray its head runs.
pub fn check_serve_config(cluster: &ClusterSpec<'_>, out: &mut Findings<'_>) {
    if !out.enabled(RuleId::ServeConfig) {
        return;
    }
    let plan = &out.policy().spec().ports;
    let Some(serve) = plan.planned.iter().find(|p| p.name == SERVE_PORT) else {
        return;
    };
    let Some(text) = cluster
        .root
        .pointer("/spec/serveConfigV2")
        .and_then(Value::as_str)
    else {
        return;
    };
    let path = PointerBuf::from_tokens(["spec", "serveConfigV2"]);
    let config: Value = match serde_yaml_ng::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            out.report(RuleId::ServeConfig, &path, || {
                format!("serveConfigV2 is not valid YAML ({e}); KubeRay cannot deploy it")
            });
            return;
        }
    };
    let head = cluster.spec.get("headGroupSpec").unwrap_or(&Value::Null);
    let default = out.policy().spec().default_ray_version;
    let ray = RayOf::of_group(head, cluster.ray_version(), default);
    check_http_port(&config, u32::from(serve.port), &ray, &path, out);
    check_grpc_port(&config, plan, &ray, &path, out);
}

/// Serve's HTTP proxy listens on the planned Serve port.
fn check_http_port(
    config: &Value,
    wanted: u32,
    ray: &RayOf<'_>,
    path: &PointerBuf,
    out: &mut Findings<'_>,
) {
    let http_port = config.pointer("/http_options/port");
    match http_port.map(as_port) {
        None => out.report(
            RuleId::ServeConfig,
            path,
            || format!(
                "serveConfigV2 leaves http_options.port unset, so Serve listens on {} ({}), not on {wanted} where KubeRay's Serve Service sends traffic; add to serveConfigV2 `http_options: {{host: 0.0.0.0, port: {wanted}}}`",
                ray.facts.serve_http_port,
                ray.name()
            ),
        ),
        Some(port) if port != Some(wanted) => out.report(
            RuleId::ServeConfig,
            path,
            || format!(
                "serveConfigV2 sets http_options.port: {}, but KubeRay's Serve Service sends traffic to {wanted}; set `port: {wanted}` under http_options",
                http_port.unwrap_or(&Value::Null)
            ),
        ),
        Some(_) => {}
    }
}

/// Serve's gRPC proxy, which runs only with servicers, keeps off every port the plan uses.
fn check_grpc_port(
    config: &Value,
    plan: &PortPolicy,
    ray: &RayOf<'_>,
    path: &PointerBuf,
    out: &mut Findings<'_>,
) {
    let servicers = config
        .pointer("/grpc_options/grpc_servicer_functions")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !servicers {
        return;
    }
    let grpc = config
        .pointer("/grpc_options/port")
        .map_or(Some(ray.facts.serve_grpc_port), as_port);
    let Some(port) = grpc else {
        out.report(RuleId::ServeConfig, path, || {
            "serveConfigV2 grpc_options.port is not a port number".to_owned()
        });
        return;
    };
    if let Some(clash) = GrpcClash::of(plan, port) {
        out.report(
            RuleId::ServeConfig,
            path,
            || format!(
                "serveConfigV2's gRPC proxy listens on {port}, which is {clash}; set grpc_options.port to a port of ports.extraAllowed that the plan leaves free ({}'s Serve default is {})",
                ray.name(),
                ray.facts.serve_grpc_port
            ),
        );
    }
}

/// What on the plan a gRPC port lands on, first found first.
enum GrpcClash<'p> {
    Planned(u16, &'p str),
    Forbidden(u16),
    NodeRange(&'p NodePortRange),
    WorkerRange(PortRange),
    Unplanned,
}

impl<'p> GrpcClash<'p> {
    fn of(plan: &'p PortPolicy, port: u32) -> Option<GrpcClash<'p>> {
        let planned = || {
            plan.planned
                .iter()
                .map(|p| (p.port, p.name.as_str()))
                .chain(plan.node_ports.iter().map(|p| (p.port, p.name.as_str())))
                .find(|(p, _)| u32::from(*p) == port)
                .map(|(p, name)| GrpcClash::Planned(p, name))
        };
        let forbidden = || {
            plan.forbidden
                .iter()
                .find(|f| u32::from(**f) == port)
                .map(|f| GrpcClash::Forbidden(*f))
        };
        let node_range = || {
            plan.node_ranges
                .iter()
                .find(|r| r.contains(port))
                .map(GrpcClash::NodeRange)
        };
        let worker_range = || {
            plan.worker_ports
                .filter(|w| w.contains(port))
                .map(GrpcClash::WorkerRange)
        };
        let unplanned = || (!plan.allows_extra(port)).then_some(GrpcClash::Unplanned);
        planned()
            .or_else(forbidden)
            .or_else(node_range)
            .or_else(worker_range)
            .or_else(unplanned)
    }
}

impl fmt::Display for GrpcClash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcClash::Planned(port, name) => write!(f, "planned {port} ({name})"),
            GrpcClash::Forbidden(port) => write!(f, "the forbidden default {port}"),
            GrpcClash::NodeRange(r) => {
                write!(f, "the plan's {}-{} ({})", r.from, r.to, r.ray_start_param)
            }
            GrpcClash::WorkerRange(w) => write!(f, "the worker range {w}"),
            GrpcClash::Unplanned => f.write_str(
                "not on the port plan (add it to the policy's ports.extraAllowed to allow it)",
            ),
        }
    }
}
