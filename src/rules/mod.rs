//! The rules of the platform plan, one module per family.
//!
//! Rules are pure: they read an object view and the policy, and record violations and
//! fill-ins in [`Findings`]. They know nothing of HTTP, files or the cluster.

pub mod network_policy;
pub mod placement;
pub mod ports;
pub mod resources;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Serialize;
use serde_json::Value;

use crate::policy::{Action, Family, Policy};

/// Every rule id, for validating `ruleActions` and for documentation.
pub const ALL_RULES: &[&str] = &[
    ports::HEAD_PORT,
    ports::METRICS_PORT,
    ports::SERVE_PORT_NAME,
    ports::RAY_START_PARAM,
    ports::NODE_PORT_RANGE,
    ports::FORBIDDEN_PORT,
    ports::WORKER_PORT_OVERLAP,
    ports::WORKER_PORT_RANGE,
    ports::SERVE_CONFIG,
    placement::NODE_NAME,
    placement::TARGETS_MASTER,
    placement::TOLERATES_CONTROL_PLANE,
    placement::NOT_PINNED,
    network_policy::MISSING,
    network_policy::BLOCKED_PORTS,
    network_policy::WORKER_PORTS,
    network_policy::NOT_VERIFIED,
    network_policy::UNCOVERS_CLUSTER,
    network_policy::DNS_EGRESS,
    network_policy::APISERVER_EGRESS,
    network_policy::EXTERNAL_ACCESS,
    network_policy::POD_LABEL,
    resources::MISSING,
    resources::INVALID_QUANTITY,
    resources::LIMIT_BELOW_REQUEST,
    resources::ABOVE_MAXIMUM,
    resources::GPU_MISMATCH,
];

/// One broken rule, where it is broken, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `<family>/<name>`.
    pub rule: &'static str,
    pub action: Action,
    /// A JSON pointer into the object.
    pub path: String,
    /// One line: what is wrong and the exact fix.
    pub message: String,
    /// The patch raygate computed cures this violation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fillable: bool,
}

/// Collects what the rules find in one object.
pub struct Findings<'p> {
    policy: &'p Policy,
    exempt: [bool; 4],
    pub violations: Vec<Violation>,
    pub fills: Vec<PatchOperation>,
}

impl<'p> Findings<'p> {
    pub fn new(policy: &'p Policy, exempt_families: impl Fn(Family) -> bool) -> Findings<'p> {
        Findings {
            policy,
            exempt: Family::ALL.map(exempt_families),
            violations: Vec::new(),
            fills: Vec::new(),
        }
    }

    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// The action a rule has for this object, `Off` when exempt or switched off.
    pub fn action(&self, rule: &str) -> Action {
        match Family::of_rule(rule) {
            Some(family) if !self.exempt[family as usize] => self.policy.action_for(rule),
            _ => Action::Off,
        }
    }

    pub fn enabled(&self, rule: &str) -> bool {
        self.action(rule) != Action::Off
    }

    pub fn report(&mut self, rule: &'static str, path: &PointerBuf, message: String) {
        self.push(rule, path, message, false);
    }

    /// Reports a violation that `fill` below cures.
    pub fn report_fillable(&mut self, rule: &'static str, path: &PointerBuf, message: String) {
        self.push(rule, path, message, true);
    }

    fn push(&mut self, rule: &'static str, path: &PointerBuf, message: String, fillable: bool) {
        let action = self.action(rule);
        if action == Action::Off {
            return;
        }
        self.violations.push(Violation {
            rule,
            action,
            path: path.to_string(),
            message,
            fillable,
        });
    }

    /// Adds a JSON Patch `add` for a field that is missing.
    pub fn fill(&mut self, path: PointerBuf, value: Value) {
        self.fills
            .push(PatchOperation::Add(AddOperation { path, value }));
    }
}

/// Formats a list like `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
