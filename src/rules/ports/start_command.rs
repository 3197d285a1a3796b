//! The `ray start` a group's container really runs (see [`crate::ray_command`]): every
//! `rayStartParams` value must stay one plain word in KubeRay's unquoted `bash -c` line, the
//! whole command must reduce to exactly one `ray start` that Ray's click parser accepts, and
//! no effective option may open a port the plan does not know.

use crate::rule_id::RuleId;
use json_patch::jsonptr::PointerBuf;
use serde_json::Value;

use crate::policy::{MAX_WORKER_PORT, MIN_WORKER_PORT, PortPolicy};
use crate::ray::{ClusterSpec, NodeGroup, child};
use crate::ray_command::{self, Cause, EffectiveStart, Refusal};
use crate::rules::Findings;

/// What raygate could tell of a group's `ray start`.
pub enum Judged {
    /// KubeRay's generated command runs; its params are judged as `rayStartParams`.
    Generated,
    /// The container's own command runs, and reduces to this one `ray start`.
    Own {
        start: EffectiveStart,
        path: PointerBuf,
    },
    /// The container's own command runs, and raygate refused it (already reported).
    OwnRefused,
}

pub fn judge(cluster: &ClusterSpec<'_>, group: &NodeGroup<'_>, out: &mut Findings<'_>) -> Judged {
    let params_path = child(&group.path, "rayStartParams");
    let plan = &out.policy().spec().ports;
    let mut params_ok = true;
    if let Some(params) = group.ray_start_params() {
        for (key, value) in params {
            let problem = match ray_command::param_value(value) {
                None => Some(format!(
                    "{} rayStartParams.{key} is {value}, not a string; write it as a string",
                    group.describe()
                )),
                Some(text) => match ray_command::param_word(key, &text) {
                    Err(Refusal(why, _)) => Some(format!("{} {why}", group.describe())),
                    Ok(_) if ray_command::option(key).is_none() => Some(format!(
                        "{} rayStartParams.{key}: `ray start` (Ray 2.60.0) has no option --{key}, so Ray exits at once; remove it",
                        group.describe()
                    )),
                    Ok(word) => match ray_command::option_value(key, word) {
                        // The plan's own keys are judged by their rules, with their fix.
                        Err(_) if planned_keys(plan).any(|k| k == key) => {
                            params_ok = false;
                            None
                        }
                        Err(Refusal(why, _)) => {
                            Some(format!("{} rayStartParams.{key}: {why}", group.describe()))
                        }
                        Ok(()) => None,
                    },
                },
            };
            if let Some(message) = problem {
                params_ok = false;
                out.report(RuleId::StartCommand, &child(&params_path, key), || message);
            }
        }
    }
    let context = ray_command::ClusterContext::of(cluster);
    let params = match ray_command::kuberay_params(group, &context) {
        Ok(params) => params,
        Err(Refusal(why, cause)) => {
            // A param that is not a string is reported above, and a quantity that is none by
            // resources/invalid-quantity; anything else is said here.
            if params_ok && cause != Cause::InvalidQuantity {
                out.report(RuleId::StartCommand, &group.path, || {
                    format!(
                        "raygate cannot rebuild the {}'s `ray start` as KubeRay v1.5.0 does: {why}",
                        group.describe()
                    )
                });
            }
            return Judged::Generated;
        }
    };
    let launch = ray_command::launch(group, &params, group.overwrites_command(cluster));
    // Where the user wrote the script: args when there are any, else command.
    let command_path = group
        .pod_spec()
        .and_then(|pod| {
            pod.ray_container().map(|c| {
                let path = pod.container_path(&c);
                let field = ["args", "command"].into_iter().find(|f| {
                    c.value
                        .get(f)
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                });
                field.map_or(path.clone(), |f| child(&path, f))
            })
        })
        .unwrap_or_else(|| group.path.clone());
    let judged_path = if launch.own_command {
        command_path
    } else {
        params_path.clone()
    };
    if !params_ok {
        return if launch.own_command {
            Judged::OwnRefused
        } else {
            Judged::Generated
        };
    }
    match ray_command::effective_start(&launch) {
        Ok(start) => {
            let own = launch.own_command && !launch.runs_generated(&start);
            let judged_path = if own { judged_path } else { params_path };
            check_unplanned_options(group, &start, &judged_path, own, out);
            if own {
                Judged::Own {
                    start,
                    path: judged_path,
                }
            } else {
                Judged::Generated
            }
        }
        Err(Refusal(why, _)) => {
            let whose = if launch.own_command {
                "runs its own command"
            } else {
                "runs KubeRay's generated command"
            };
            out.report(RuleId::StartCommand, &judged_path, || {
                format!(
                    "the {}'s Ray container {whose}, which raygate cannot reduce to exactly one `ray start`: {why}",
                    group.describe()
                )
            });
            if launch.own_command {
                Judged::OwnRefused
            } else {
                Judged::Generated
            }
        }
    }
}

/// Every `rayStartParams` key, and `ray start` option, the plan pins.
fn planned_keys(plan: &PortPolicy) -> impl Iterator<Item = &str> {
    plan.planned
        .iter()
        .filter_map(|p| p.ray_start_param.as_deref())
        .chain(plan.node_ports.iter().map(|p| p.ray_start_param.as_str()))
        .chain(plan.node_ranges.iter().map(|r| r.ray_start_param.as_str()))
        .chain([MIN_WORKER_PORT, MAX_WORKER_PORT, "worker-port-list"])
}

/// A port option the plan does not pin (`redis-shard-ports`, or a node port the policy does
/// not list) opens a listener no NetworkPolicy written from the plan admits.
fn check_unplanned_options(
    group: &NodeGroup<'_>,
    start: &EffectiveStart,
    path: &PointerBuf,
    own_command: bool,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::UnplannedPort) {
        return;
    }
    let plan = &out.policy().spec().ports;
    for (name, value) in &start.options {
        if !ray_command::is_port_option(name) || planned_keys(plan).any(|k| k == *name) {
            continue;
        }
        let at = if own_command {
            path.clone()
        } else {
            child(path, name)
        };
        let shown = value.shown();
        out.report(RuleId::UnplannedPort, &at, || {
            format!(
                "the {} starts Ray with --{name}={shown}, a port the plan does not pin, which no NetworkPolicy written from the plan admits; remove it (or add it to the policy's plan)",
                group.describe()
            )
        });
    }
}
