//! Results of `check` and `audit` for people (text) and for tools (JSON, SARIF, JUnit).

use std::io::{self, Write};

use serde::Serialize;

use crate::engine::{Coverage, Decision};
use crate::policy::{Action, Mode, Policy};
use crate::rule_id::RuleId;
use crate::rules::Violation;

/// How `check` and `audit` write their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    /// SARIF 2.1.0, for code scanning (GitHub and others).
    Sarif,
    /// JUnit XML, one test case per Ray object (GitLab, Jenkins).
    Junit,
}

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

    /// The object as reports name it: `Kind namespace/name`.
    fn who(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn checked(&self) -> bool {
        self.coverage == Coverage::Cluster.as_str() || self.coverage == Coverage::Pod.as_str()
    }
}

/// `file:line` as checks name a document's source; a source without a line (a cluster) has none.
fn split_source(source: &str) -> (&str, Option<u64>) {
    match source.rsplit_once(':') {
        Some((file, line)) if !file.is_empty() => match line.parse() {
            Ok(line) => (file, Some(line)),
            Err(_) => (source, None),
        },
        _ => (source, None),
    }
}

impl Report {
    pub fn denied(&self) -> usize {
        self.results.iter().filter(|r| !r.allowed).count()
    }

    pub fn write(&self, output: Output, policy: &Policy, out: &mut impl Write) -> io::Result<()> {
        match output {
            Output::Text | Output::Json => {
                let mut writer = ReportWriter::new(output, policy, &mut *out);
                for result in &self.results {
                    writer.write_result(result)?;
                }
                writer.finish().map(drop)
            }
            Output::Sarif => self.write_sarif(policy, out),
            Output::Junit => self.write_junit(out),
        }
    }

    /// SARIF 2.1.0: every rule as a reportingDescriptor with its help, every finding as a
    /// result at its file and line, with the JSON pointer and the fix.
    pub fn write_sarif(&self, policy: &Policy, out: &mut impl Write) -> io::Result<()> {
        let rules: Vec<serde_json::Value> = RuleId::ALL
            .iter()
            .map(|&rule| {
                let help = crate::rules::help(rule, policy);
                serde_json::json!({
                    "id": rule,
                    "shortDescription": {"text": help},
                    "help": {"text": format!(
                        "{help} Each finding's message names the exact fix; `raygate fix` applies the ones marked fill."
                    )},
                })
            })
            .collect();
        let mut results = Vec::new();
        for result in self.results.iter().filter(|r| r.checked()) {
            let (file, line) = split_source(&result.source);
            let who = result.who();
            for violation in &result.violations {
                let level = if violation.fillable {
                    "note"
                } else if result.warns(violation) || violation.action != Action::Deny {
                    "warning"
                } else {
                    "error"
                };
                let rule_index = RuleId::ALL
                    .iter()
                    .position(|r| *r == violation.rule)
                    .unwrap_or(0);
                let mut location = serde_json::json!({
                    "physicalLocation": {"artifactLocation": {"uri": file}},
                    "logicalLocations": [{
                        "fullyQualifiedName": format!("{who}{}", violation.path),
                        "kind": "object",
                    }],
                });
                if let Some(line) = line {
                    location["physicalLocation"]["region"] = serde_json::json!({"startLine": line});
                }
                results.push(serde_json::json!({
                    "ruleId": violation.rule,
                    "ruleIndex": rule_index,
                    "level": level,
                    "message": {"text": format!("{who}: {}", violation.message)},
                    "locations": [location],
                    "properties": {
                        "jsonPointer": violation.path,
                        "fillable": violation.fillable,
                        "action": violation.action.as_str(),
                    },
                }));
            }
        }
        let sarif = serde_json::json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "raygate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "results": results,
            }],
        });
        serde_json::to_writer_pretty(&mut *out, &sarif)?;
        writeln!(out)
    }

    /// JUnit XML: one test case per Ray object, failed when admission would deny it.
    pub fn write_junit(&self, out: &mut impl Write) -> io::Result<()> {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let mut report = quick_junit::Report::new("raygate");
        let mut suite = TestSuite::new("raygate check");
        for result in self.results.iter().filter(|r| r.checked()) {
            let who = result.who();
            let findings: Vec<String> = result
                .violations
                .iter()
                .map(|v| {
                    let tag = if v.fillable {
                        "fill"
                    } else {
                        v.action.as_str()
                    };
                    format!("{tag} {} at {}: {}", v.rule, v.path, v.message)
                })
                .collect();
            let status = if result.allowed {
                TestCaseStatus::success()
            } else {
                let denied = result
                    .violations
                    .iter()
                    .filter(|v| v.action == Action::Deny && !v.fillable)
                    .count();
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!(
                    "denied: {denied} violation(s) of the Ray platform plan"
                ));
                status.set_type("raygate.denied");
                status.set_description(findings.join("\n"));
                status
            };
            let mut case = TestCase::new(who, status);
            case.set_classname(result.source.clone());
            if result.allowed && !findings.is_empty() {
                case.set_system_out(findings.join("\n"));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        let xml = report
            .to_string()
            .map_err(|e| io::Error::other(e.to_string()))?;
        out.write_all(xml.as_bytes())
    }
}

/// Counts of a check's results: its summary line and exit code.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Ray objects judged.
    pub checked: usize,
    pub denied: usize,
    /// Ray objects that admission would fill in.
    pub with_fill_ins: usize,
    /// Ray objects admitted with warnings (in audit mode, what enforcement would deny too).
    pub with_warnings: usize,
    pub out_of_scope: usize,
}

impl Tally {
    fn add(&mut self, result: &CheckResult) {
        if !result.checked() {
            self.out_of_scope += 1;
            return;
        }
        self.checked += 1;
        self.denied += usize::from(!result.allowed);
        self.with_fill_ins += usize::from(!result.patch.0.is_empty());
        self.with_warnings += usize::from(result.violations.iter().any(|v| result.warns(v)));
    }
}

/// Writes text and JSON reports one result at a time, so `check` holds one file's results,
/// not every file's. SARIF and JUnit are single documents: their results are kept until
/// [`ReportWriter::finish`].
pub struct ReportWriter<'p, W: Write> {
    output: Output,
    /// Whose rules SARIF describes.
    policy: &'p Policy,
    out: W,
    tally: Tally,
    kept: Vec<CheckResult>,
}

impl<'p, W: Write> ReportWriter<'p, W> {
    pub fn new(output: Output, policy: &'p Policy, out: W) -> ReportWriter<'p, W> {
        ReportWriter {
            output,
            policy,
            out,
            tally: Tally::default(),
            kept: Vec::new(),
        }
    }

    pub fn push(&mut self, result: CheckResult) -> io::Result<()> {
        match self.output {
            Output::Text | Output::Json => self.write_result(&result),
            Output::Sarif | Output::Junit => {
                self.tally.add(&result);
                self.kept.push(result);
                Ok(())
            }
        }
    }

    fn write_result(&mut self, result: &CheckResult) -> io::Result<()> {
        let first = self.tally.checked + self.tally.out_of_scope == 0;
        self.tally.add(result);
        match self.output {
            Output::Json => write_json_result(&mut self.out, result, first),
            _ => write_text_result(&mut self.out, result),
        }
    }

    /// Writes what remains (the summary, the closing brackets, a whole SARIF or JUnit report).
    pub fn finish(mut self) -> io::Result<Tally> {
        let tally = self.tally;
        match self.output {
            Output::Text => writeln!(
                self.out,
                "{} Ray object(s) checked: {} denied, {} with fill-ins; {} other object(s) out of scope",
                tally.checked, tally.denied, tally.with_fill_ins, tally.out_of_scope
            )?,
            // As serde_json's pretty printer writes a `Report`.
            Output::Json if tally.checked + tally.out_of_scope == 0 => {
                writeln!(self.out, "{{\n  \"results\": []\n}}")?
            }
            Output::Json => writeln!(self.out, "\n  ]\n}}")?,
            Output::Sarif => {
                Report { results: self.kept }.write_sarif(self.policy, &mut self.out)?
            }
            Output::Junit => Report { results: self.kept }.write_junit(&mut self.out)?,
        }
        self.out.flush()?;
        Ok(tally)
    }
}

/// One result as an element of the pretty-printed `results` array.
fn write_json_result(out: &mut impl Write, result: &CheckResult, first: bool) -> io::Result<()> {
    out.write_all(if first {
        b"{\n  \"results\": [\n"
    } else {
        b",\n"
    })?;
    let element = serde_json::to_vec_pretty(result)?;
    // Nested two levels deep; JSON strings hold no raw line breaks, so every line is indented.
    for (i, line) in element.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(b"    ")?;
        out.write_all(line)?;
    }
    Ok(())
}

/// One object, every violation with its path and fix.
fn write_text_result(out: &mut impl Write, result: &CheckResult) -> io::Result<()> {
    if !result.checked() {
        return Ok(());
    }
    let who = result.who();
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
    Ok(())
}
