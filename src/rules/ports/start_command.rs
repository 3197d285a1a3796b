//! The `ray start` a group's container really runs (see [`crate::ray_command`]): every
//! `rayStartParams` value must stay one plain word in KubeRay's unquoted `bash -c` line, the
//! whole command must reduce to exactly one `ray start` that Ray's click parser accepts, and
//! no effective option may open a port the plan does not know.

use crate::rule_id::RuleId;
use json_patch::jsonptr::PointerBuf;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::policy::{MAX_WORKER_PORT, MIN_WORKER_PORT, PortPolicy};
use crate::ray::{ClusterSpec, NodeGroup, child};
use crate::ray_command::{self, Cause, EffectiveStart, Refusal};
use crate::ray_version::{RayOf, VersionFacts};
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

pub fn judge(
    cluster: &ClusterSpec<'_>,
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    out: &mut Findings<'_>,
) -> Judged {
    let params_path = child(&group.path, "rayStartParams");
    let params_ok = check_params(group, ray, &params_path, out);
    let Some(params) = rebuild_params(cluster, group, params_ok, out) else {
        return Judged::Generated;
    };
    let launch = ray_command::launch(group, &params, group.overwrites_command(cluster));
    if !params_ok {
        return Judged::refused(launch.own_command);
    }
    judge_launch(group, ray, &launch, params_path, out)
}

impl Judged {
    /// A command raygate refused: only the container's own command is a refused one; KubeRay's
    /// generated command still has its params judged as `rayStartParams`.
    fn refused(own_command: bool) -> Judged {
        if own_command {
            Judged::OwnRefused
        } else {
            Judged::Generated
        }
    }
}

/// Every `rayStartParams` value must be one word `ray start` takes; `false` when one is not.
fn check_params(
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    params_path: &PointerBuf,
    out: &mut Findings<'_>,
) -> bool {
    let plan = &out.policy().spec().ports;
    let mut params_ok = true;
    for (key, value) in group.ray_start_params().into_iter().flatten() {
        match ParamVerdict::of(key, value, plan, ray.facts) {
            ParamVerdict::Fine => {}
            // The plan's own keys are judged by their rules, with their fix.
            ParamVerdict::PlannedKeyRefused => params_ok = false,
            ParamVerdict::Refused(problem) => {
                params_ok = false;
                out.report(RuleId::StartCommand, &child(params_path, key), || {
                    problem.message(group, ray, key, value)
                });
            }
        }
    }
    params_ok
}

/// What `ray start` makes of one `rayStartParams` value.
enum ParamVerdict {
    Fine,
    /// A value of a key the plan pins, which Ray refuses: the plan's rule reports it.
    PlannedKeyRefused,
    Refused(ParamProblem),
}

/// Why a `rayStartParams` value cannot go into KubeRay's `ray start` line.
enum ParamProblem {
    /// Not a string.
    NotString,
    /// Not one plain word in KubeRay's unquoted `bash -c` line.
    NotAWord(String),
    /// A key `ray start` has no option for.
    NoSuchOption,
    /// A value Ray's click parser refuses.
    BadValue(String),
}

impl ParamVerdict {
    fn of(
        key: &str,
        value: &Value,
        plan: &PortPolicy,
        facts: &'static VersionFacts,
    ) -> ParamVerdict {
        use ParamVerdict::Refused;
        let Some(text) = ray_command::param_value(value) else {
            return Refused(ParamProblem::NotString);
        };
        let word = match ray_command::param_word(key, &text) {
            Err(Refusal(why, _)) => return Refused(ParamProblem::NotAWord(why)),
            Ok(_) if ray_command::option(key, facts).is_none() => {
                return Refused(ParamProblem::NoSuchOption);
            }
            Ok(word) => word,
        };
        match ray_command::option_value(key, word, facts) {
            Err(_) if planned_keys(plan).any(|k| k == key) => ParamVerdict::PlannedKeyRefused,
            Err(Refusal(why, _)) => Refused(ParamProblem::BadValue(why)),
            Ok(()) => ParamVerdict::Fine,
        }
    }
}

impl ParamProblem {
    fn message(&self, group: &NodeGroup<'_>, ray: &RayOf<'_>, key: &str, value: &Value) -> String {
        match self {
            ParamProblem::NotString => format!(
                "{} rayStartParams.{key} is {value}, not a string; write it as a string",
                group.describe()
            ),
            ParamProblem::NotAWord(why) => format!("{} {why}", group.describe()),
            ParamProblem::NoSuchOption => format!(
                "{} rayStartParams.{key}: `ray start` of {} has no option --{key}, so Ray exits at once{}; remove it",
                group.describe(),
                ray.name(),
                ray_command::measured_span(key, ray.facts)
            ),
            ParamProblem::BadValue(why) => {
                format!("{} rayStartParams.{key}: {why}", group.describe())
            }
        }
    }
}

/// The params KubeRay v1.5.0 would put on the group's `ray start` line; `None` when raygate
/// cannot rebuild them.
fn rebuild_params(
    cluster: &ClusterSpec<'_>,
    group: &NodeGroup<'_>,
    params_ok: bool,
    out: &mut Findings<'_>,
) -> Option<BTreeMap<String, String>> {
    let context = ray_command::ClusterContext::of(cluster);
    match ray_command::kuberay_params(group, &context) {
        Ok(params) => Some(params),
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
            None
        }
    }
}

/// The command the container runs must reduce to exactly one `ray start`, opening no port the
/// plan does not pin.
fn judge_launch(
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    launch: &ray_command::Launch,
    params_path: PointerBuf,
    out: &mut Findings<'_>,
) -> Judged {
    match ray_command::effective_start(launch, ray.facts) {
        Ok(start) => {
            let own = launch.own_command && !launch.runs_generated(&start);
            let path = if own {
                command_path(group)
            } else {
                params_path
            };
            check_unplanned_options(group, &start, &path, own, out);
            if own {
                Judged::Own { start, path }
            } else {
                Judged::Generated
            }
        }
        Err(Refusal(why, _)) => {
            let (path, whose) = if launch.own_command {
                (command_path(group), "runs its own command")
            } else {
                (params_path, "runs KubeRay's generated command")
            };
            out.report(RuleId::StartCommand, &path, || {
                format!(
                    "the {}'s Ray container {whose}, which raygate cannot reduce to exactly one `ray start`: {why}",
                    group.describe()
                )
            });
            Judged::refused(launch.own_command)
        }
    }
}

/// Where the user wrote the script: the Ray container's args when there are any, else its
/// command.
fn command_path(group: &NodeGroup<'_>) -> PointerBuf {
    group
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
        .unwrap_or_else(|| group.path.clone())
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
