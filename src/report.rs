//! Results of `check` and `audit` for people (text) and for tools (JSON, SARIF, JUnit).

use std::fmt;
use std::io::{self, Write};

use serde::{Serialize, Serializer};

use crate::engine::{Decision, Effect, Judged};
use crate::manifest;
use crate::policy::{Mode, Policy};
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

/// Where a result's object came from. Written as `file:line`, `file:line items[i]` for an
/// item of a `kind: List` document, or `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A document of a manifest, or (`item`) an item of a `kind: List` document.
    Manifest {
        document: manifest::Source,
        item: Option<usize>,
    },
    /// A live cluster (`audit`).
    Cluster,
}

impl Origin {
    /// The file, as SARIF's artifact location names it.
    pub fn file(&self) -> &str {
        match self {
            Origin::Manifest { document, .. } => &document.file,
            Origin::Cluster => "cluster",
        }
    }

    /// The line the document starts on; a cluster's objects have none.
    pub fn line(&self) -> Option<usize> {
        match self {
            Origin::Manifest { document, .. } => Some(document.line),
            Origin::Cluster => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Manifest {
                document,
                item: None,
            } => write!(f, "{document}"),
            Origin::Manifest {
                document,
                item: Some(i),
            } => write!(f, "{document} items[{i}]"),
            Origin::Cluster => f.write_str("cluster"),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub source: Origin,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub allowed: bool,
    pub violations: Vec<Violation>,
    pub patch: json_patch::Patch,
    #[serde(rename = "coverage")]
    pub judged: Judged,
    pub mode: Mode,
}

impl CheckResult {
    pub fn new(
        source: Origin,
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
            judged: decision.judged,
            mode: decision.mode,
            violations: decision.violations,
            patch: decision.patch,
        }
    }

    /// What admission does with one of this result's findings (once filled in).
    pub fn effect(&self, violation: &Violation) -> Effect {
        crate::engine::effect(self.mode, violation)
    }

    /// How many findings have `effect`.
    fn count(&self, effect: Effect) -> usize {
        self.violations
            .iter()
            .filter(|v| self.effect(v) == effect)
            .count()
    }

    /// The object as reports name it: `Kind namespace/name`.
    fn who(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn checked(&self) -> bool {
        self.judged.rules_ran()
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
        let results: Vec<serde_json::Value> = self
            .results
            .iter()
            .filter(|r| r.checked())
            .flat_map(|result| result.violations.iter().map(|v| sarif_result(result, v)))
            .collect();
        let sarif = serde_json::json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "raygate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": sarif_rules(policy),
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
                    let tag = match result.effect(v) {
                        Effect::Fill => "fill",
                        Effect::Deny | Effect::WouldDeny => "deny",
                        Effect::Warn => "warn",
                        Effect::Audit => "audit",
                    };
                    format!("{tag} {} at {}: {}", v.rule, v.path, v.message)
                })
                .collect();
            let status = if result.allowed {
                TestCaseStatus::success()
            } else {
                let denied = result.count(Effect::Deny);
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!(
                    "denied: {denied} violation(s) of the Ray platform plan"
                ));
                status.set_type("raygate.denied");
                status.set_description(findings.join("\n"));
                status
            };
            let mut case = TestCase::new(who, status);
            case.set_classname(result.source.to_string());
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
        self.with_warnings +=
            usize::from(result.violations.iter().any(|v| result.effect(v).warns()));
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
    writeln!(
        out,
        "{}: {}: {}",
        result.source,
        result.who(),
        verdict(result)
    )?;
    for violation in &result.violations {
        let effect = result.effect(violation);
        let tag = match effect {
            Effect::Fill => "fill",
            Effect::Deny => "DENY",
            Effect::WouldDeny | Effect::Warn => "warn",
            Effect::Audit => "audit",
        };
        // A finding on the object as a whole has the empty JSON pointer.
        let path = if violation.path.is_empty() {
            "(object)"
        } else {
            violation.path.as_str()
        };
        writeln!(out, "  {tag:<5} {}  {path}", violation.rule)?;
        if effect == Effect::WouldDeny {
            writeln!(out, "        (denied when enforcing) {}", violation.message)?;
        } else {
            writeln!(out, "        {}", violation.message)?;
        }
    }
    Ok(())
}

/// What the text report says of an object as a whole.
fn verdict(result: &CheckResult) -> String {
    let fills = result.count(Effect::Fill);
    let to_fix = result.violations.len() - fills;
    // In audit mode nothing is denied: what enforcement would deny is a warning.
    let would_deny = result.count(Effect::WouldDeny);
    match (result.allowed, to_fix, fills) {
        (false, _, _) => "DENIED".to_owned(),
        (true, 0, 0) => "ok".to_owned(),
        (true, 0, _) => "allowed once filled in".to_owned(),
        (true, _, _) if would_deny > 0 => format!(
            "allowed with warnings (audit mode; {would_deny} finding(s) would deny it when enforcing)"
        ),
        (true, _, _) => "allowed with warnings".to_owned(),
    }
}

/// Every rule as a SARIF reportingDescriptor, with its help in `policy`'s numbers.
fn sarif_rules(policy: &Policy) -> Vec<serde_json::Value> {
    RuleId::ALL
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
        .collect()
}

/// One finding as a SARIF result, at its file and line.
fn sarif_result(result: &CheckResult, violation: &Violation) -> serde_json::Value {
    let who = result.who();
    let level = match result.effect(violation) {
        Effect::Fill => "note",
        Effect::Deny => "error",
        Effect::WouldDeny | Effect::Warn | Effect::Audit => "warning",
    };
    let rule_index = RuleId::ALL
        .iter()
        .position(|r| *r == violation.rule)
        .unwrap_or(0);
    let mut location = serde_json::json!({
        "physicalLocation": {"artifactLocation": {"uri": result.source.file()}},
        "logicalLocations": [{
            "fullyQualifiedName": format!("{who}{}", violation.path),
            "kind": "object",
        }],
    });
    if let Some(line) = result.source.line() {
        location["physicalLocation"]["region"] = serde_json::json!({"startLine": line});
    }
    serde_json::json!({
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
    })
}
