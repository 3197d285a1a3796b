//! The worker-process range of one group: pinned inside the plan's range, and clear of every
//! port the node listens on, or Ray refuses to start the node.

use serde_json::{Map, Value};

use super::{StartParams, planned_for};
use crate::policy::{MAX_WORKER_PORT, MIN_WORKER_PORT, PortPolicy, PortRange};
use crate::ray::{NodeGroup, as_port, child, param_text};
use crate::rule_id::RuleId;
use crate::rules::{Findings, and_list};

/// Ray's list of worker ports; when set it replaces min/max-worker-port.
const WORKER_PORT_LIST: &str = "worker-port-list";

/// The group's worker ports, from `worker-port-list` or min/max-worker-port; the plan's bounds
/// for the ones left unset go into `missing`.
pub(super) fn check(
    params: &StartParams<'_>,
    plan: &PortPolicy,
    missing: &mut Map<String, Value>,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::WorkerPortRange) && !out.enabled(RuleId::WorkerPortOverlap) {
        return;
    }
    if let Some(list) = params.get(WORKER_PORT_LIST) {
        check_worker_port_list(params, plan, list, out);
        return;
    }
    let bounds = Bounds::of(params);
    let outside = bounds.outside(plan.worker_ports);
    let clashes = match (bounds.min, bounds.max) {
        (Some(min), Some(max)) if min > 0 && min <= max => {
            clashes_with_plan(params.group, plan, min, max)
        }
        _ => Vec::new(),
    };
    if !outside.is_empty() || bounds.inverted() {
        report_bad_bounds(params, &bounds, &outside, &clashes, plan.worker_ports, out);
        return;
    }
    if bounds.min_value.is_some() && bounds.max_value.is_some() {
        return;
    }
    // At least one bound is unset: Ray's default reaches it.
    match plan.worker_ports {
        Some(range) => check_unset_bounds(params, &bounds, range, &clashes, missing, out),
        None if !clashes.is_empty() => report_default_clash(params, &bounds, &clashes, out),
        None => {}
    }
}

/// min-worker-port and max-worker-port as written, and as Ray reads them: each on its own, an
/// unset one at Ray's default; `None` for a value that is not a port.
struct Bounds<'a> {
    min_value: Option<&'a Value>,
    max_value: Option<&'a Value>,
    min: Option<u32>,
    max: Option<u32>,
}

impl<'a> Bounds<'a> {
    fn of(params: &StartParams<'a>) -> Bounds<'a> {
        let (min_value, max_value) = (params.get(MIN_WORKER_PORT), params.get(MAX_WORKER_PORT));
        Bounds {
            min_value,
            max_value,
            min: min_value.map_or(Some(u32::from(params.ray.facts.worker_ports.from)), as_port),
            max: max_value.map_or(Some(u32::from(params.ray.facts.worker_ports.to)), as_port),
        }
    }

    /// Bounds the user set outside the plan: reported, never overwritten.
    fn outside(&self, wanted: Option<PortRange>) -> Vec<(&'static str, &'a Value)> {
        let mut outside = Vec::new();
        for (key, value, parsed) in [
            (MIN_WORKER_PORT, self.min_value, self.min),
            (MAX_WORKER_PORT, self.max_value, self.max),
        ] {
            let Some(value) = value else { continue };
            let inside = match (parsed, wanted) {
                (Some(port), Some(range)) => range.contains(port),
                (Some(port), None) => port > 0,
                (None, _) => false,
            };
            if !inside {
                outside.push((key, value));
            }
        }
        outside
    }

    fn inverted(&self) -> bool {
        self.min.zip(self.max).is_some_and(|(min, max)| min > max)
    }

    /// The bounds left unset, each with the plan's value for it.
    fn unset(&self, range: PortRange) -> Vec<(&'static str, u16)> {
        [
            (MIN_WORKER_PORT, self.min_value, range.from),
            (MAX_WORKER_PORT, self.max_value, range.to),
        ]
        .into_iter()
        .filter(|(_, value, _)| value.is_none())
        .map(|(key, _, port)| (key, port))
        .collect()
    }
}

/// A range that holds a planned port is the overlap rule's; any other miss is the range rule's.
fn rule_for_clashes(clashes: &[String]) -> RuleId {
    if clashes.is_empty() {
        RuleId::WorkerPortRange
    } else {
        RuleId::WorkerPortOverlap
    }
}

/// Bounds set outside the plan, or the wrong way round.
fn report_bad_bounds(
    params: &StartParams<'_>,
    bounds: &Bounds<'_>,
    outside: &[(&str, &Value)],
    clashes: &[String],
    wanted: Option<PortRange>,
    out: &mut Findings<'_>,
) {
    let path = child(
        &params.path,
        outside.first().map_or(MIN_WORKER_PORT, |o| o.0),
    );
    out.report(rule_for_clashes(clashes), &path, || {
        let what = if outside.is_empty() {
            format!(
                "min-worker-port {} is above max-worker-port {}",
                bounds.min.unwrap_or(0),
                bounds.max.unwrap_or(0)
            )
        } else {
            let shown: Vec<String> = outside.iter().map(|(k, v)| format!("{k} is {v}")).collect();
            and_list(&shown)
        };
        let why = if clashes.is_empty() {
            String::new()
        } else {
            format!(
                ", which holds planned {} and makes {} refuse to start the node",
                and_list(clashes),
                params.ray.name()
            )
        };
        let plan_text = wanted.map_or_else(
            || "a range clear of the plan".to_owned(),
            |range| format!("the plan's {range}"),
        );
        format!(
            "{} rayStartParams {what}{why}; keep worker ports inside {plan_text}",
            params.group.describe()
        )
    });
}

/// No worker range on the plan, and Ray's default range holds a planned port.
fn report_default_clash(
    params: &StartParams<'_>,
    bounds: &Bounds<'_>,
    clashes: &[String],
    out: &mut Findings<'_>,
) {
    out.report(
        RuleId::WorkerPortOverlap,
        &params.path,
        || format!(
            "{} leaves min/max-worker-port unset, so {} gives worker processes {}-{}, which holds planned {} and makes Ray refuse to start the node; set min-worker-port and max-worker-port clear of the plan",
            params.group.describe(),
            params.ray.name(),
            bounds.min.unwrap_or(0),
            bounds.max.unwrap_or(0),
            and_list(clashes)
        ),
    );
}

/// A bound left unset takes Ray's default, not the plan's range: the plan's bound is filled in.
fn check_unset_bounds(
    params: &StartParams<'_>,
    bounds: &Bounds<'_>,
    range: PortRange,
    clashes: &[String],
    missing: &mut Map<String, Value>,
    out: &mut Findings<'_>,
) {
    let unset = bounds.unset(range);
    let rule = rule_for_clashes(clashes);
    let message = || {
        let why = if clashes.is_empty() {
            "not inside the plan's worker range, which the cluster's NetworkPolicy admits"
                .to_owned()
        } else {
            format!(
                "which holds planned {}, so Ray refuses to start the node",
                and_list(clashes)
            )
        };
        let settings: Vec<String> = unset.iter().map(|(k, p)| format!("{k}: \"{p}\"")).collect();
        format!(
            "{} leaves {} unset, so {} gives worker processes {}-{}, {why}; set {} (worker ports {range})",
            params.group.describe(),
            unset
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(" and "),
            params.ray.name(),
            bounds.min.unwrap_or(0),
            bounds.max.unwrap_or(0),
            settings.join(", ")
        )
    };
    if !params.can_fill {
        out.report(rule, &params.path, message);
        return;
    }
    out.report_fillable(rule, &params.path, message);
    for (key, port) in unset {
        missing.insert(key.to_owned(), Value::String(port.to_string()));
    }
}

/// The planned ports and ranges of `group`'s nodes that the worker range `min..=max` holds.
fn clashes_with_plan(group: &NodeGroup<'_>, plan: &PortPolicy, min: u32, max: u32) -> Vec<String> {
    let workers = min..=max;
    let mut clashes: Vec<String> = planned_for(group.role, plan)
        .map(|p| (p.port, p.name.as_str()))
        .chain(plan.node_ports.iter().map(|p| (p.port, p.name.as_str())))
        .filter(|(port, _)| workers.contains(&u32::from(*port)))
        .map(|(port, name)| format!("{port} ({name})"))
        .collect();
    clashes.extend(
        plan.node_ranges
            .iter()
            .filter(|r| u32::from(r.from) <= max && min <= u32::from(r.to))
            .map(|r| format!("{}-{} ({})", r.from, r.to, r.ray_start_param)),
    );
    clashes
}

fn check_worker_port_list(
    params: &StartParams<'_>,
    plan: &PortPolicy,
    list: &Value,
    out: &mut Findings<'_>,
) {
    let text = param_text(list).unwrap_or_default();
    let ports: Vec<Option<u32>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    let range: Option<PortRange> = plan.worker_ports;
    let bad: Vec<String> = text
        .split(',')
        .zip(&ports)
        .filter(|(_, port)| match (port, range) {
            (Some(port), Some(range)) => !range.contains(*port),
            (Some(port), None) => !clashes_with_plan(params.group, plan, *port, *port).is_empty(),
            (None, _) => true,
        })
        .map(|(p, _)| p.trim().to_owned())
        .collect();
    if bad.is_empty() {
        return;
    }
    out.report(
        RuleId::WorkerPortRange,
        &child(&params.path, WORKER_PORT_LIST),
        || {
            let plan_text = range.map_or_else(
                || "ports clear of the plan".to_owned(),
                |r| format!("ports inside the plan's worker range {r}"),
            );
            format!(
                "{} rayStartParams.worker-port-list has {}; list only {plan_text}",
                params.group.describe(),
                and_list(&bad)
            )
        },
    );
}
