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

    fn audit_mode(&self) -> bool {
        self.mode == Mode::Audit.as_str()
    }

    /// Whether admission answers this finding with a warning.
    fn warns(&self, violation: &Violation) -> bool {
        !violation.fillable
            && (violation.action == Action::Warn
                || self.audit_mode() && violation.action == Action::Deny)
    }

    fn checked(&self) -> bool {
        self.coverage == Coverage::Cluster.as_str() || self.coverage == Coverage::Pod.as_str()
    }
}

impl Report {
    pub fn denied(&self) -> usize {
        self.results.iter().filter(|r| !r.allowed).count()
    }

    /// Ray objects judged (the rest are out of scope).
    pub fn checked(&self) -> usize {
        self.results.iter().filter(|r| r.checked()).count()
    }

    /// Ray objects that admission would fill in.
    pub fn with_fill_ins(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.checked() && !r.patch.0.is_empty())
            .count()
    }

    /// Ray objects admitted with warnings (in audit mode, what enforcement would deny too).
    pub fn with_warnings(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.checked() && r.violations.iter().any(|v| r.warns(v)))
            .count()
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
            // In audit mode nothing is denied: what enforcement would deny is a warning.
            let would_deny = result
                .violations
                .iter()
                .filter(|v| !v.fillable && v.action == Action::Deny)
                .count();
            let verdict = match (result.allowed, to_fix, fills) {
                (false, _, _) => "DENIED".to_owned(),
                (true, 0, 0) => "ok".to_owned(),
                (true, 0, _) => "allowed once filled in".to_owned(),
                (true, _, _) if result.audit_mode() && would_deny > 0 => format!(
                    "allowed with warnings (audit mode; {would_deny} finding(s) would deny it when enforcing)"
                ),
                (true, _, _) => "allowed with warnings".to_owned(),
            };
            writeln!(out, "{}: {who}: {verdict}", result.source)?;
            for violation in &result.violations {
                let tag = if violation.fillable {
                    "fill"
                } else if result.warns(violation) {
                    "warn"
                } else {
                    match violation.action {
                        Action::Deny => "DENY",
                        Action::Warn => "warn",
                        Action::Audit => "audit",
                        Action::Off => "off",
                    }
                };
                // A finding on the object as a whole has the empty JSON pointer.
                let path = if violation.path.is_empty() {
                    "(object)"
                } else {
                    violation.path.as_str()
                };
                writeln!(out, "  {tag:<5} {}  {path}", violation.rule)?;
                if result.audit_mode() && violation.action == Action::Deny && !violation.fillable {
                    writeln!(out, "        (denied when enforcing) {}", violation.message)?;
                } else {
                    writeln!(out, "        {}", violation.message)?;
                }
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
