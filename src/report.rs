//! Results of `check` for people (text) and for tools (JSON).

use std::io::{self, Write};

use serde::Serialize;

use crate::engine::{Coverage, Decision};
use crate::policy::{Action, Mode};
use crate::rules::Violation;

#[derive(Debug, Serialize)]
pub struct Report {
    pub results: Vec<CheckResult>,
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub source: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub allowed: bool,
    pub violations: Vec<Violation>,
    pub patch: json_patch::Patch,
    pub coverage: &'static str,
    pub mode: &'static str,
}

impl CheckResult {
    pub fn new(
        source: String,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        decision: Decision,
    ) -> CheckResult {
        CheckResult {
            source,
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            allowed: decision.allowed(),
            coverage: decision.coverage.as_str(),
            mode: decision.mode.as_str(),
            violations: decision.violations,
            patch: decision.patch,
        }
    }

    fn checked(&self) -> bool {
        self.coverage == Coverage::Cluster.as_str() || self.coverage == Coverage::Pod.as_str()
    }
}

impl Report {
    pub fn denied(&self) -> usize {
        self.results.iter().filter(|r| !r.allowed).count()
    }

    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// Grouped by object; every violation with its path and fix.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let mut checked = 0;
        let mut filled = 0;
        for result in &self.results {
            if !result.checked() {
                continue;
            }
            checked += 1;
            if !result.patch.0.is_empty() {
                filled += 1;
            }
            let who = match &result.namespace {
                Some(ns) => format!("{} {ns}/{}", result.kind, result.name),
                None => format!("{} {}", result.kind, result.name),
            };
            let to_fix = result.violations.iter().filter(|v| !v.fillable).count();
            let fills = result.violations.len() - to_fix;
            let verdict = match (result.allowed, to_fix, fills) {
                (false, _, _) => "DENIED",
                (true, 0, 0) => "ok",
                (true, 0, _) => "allowed once filled in",
                (true, _, _) if result.mode == Mode::Audit.as_str() => "allowed (audit mode)",
                (true, _, _) => "allowed with warnings",
            };
            writeln!(out, "{}: {who}: {verdict}", result.source)?;
            for violation in &result.violations {
                let tag = if violation.fillable {
                    "fill"
                } else {
                    match violation.action {
                        Action::Deny => "DENY",
                        Action::Warn => "warn",
                        Action::Audit => "audit",
                        Action::Off => "off",
                    }
                };
                writeln!(out, "  {tag:<5} {}  {}", violation.rule, violation.path)?;
                writeln!(out, "        {}", violation.message)?;
            }
        }
        writeln!(
            out,
            "{checked} Ray object(s) checked: {} denied, {filled} with fill-ins; {} other object(s) out of scope",
            self.denied(),
            self.results.len() - checked
        )
    }
}
