//! `check` and `fix`: the engine over manifests on disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::engine::{Context, Engine};
use crate::manifest::{self, Format, ManifestFile};
use crate::ray::ObjectRef;
use crate::report::{CheckResult, Report};
use crate::rules::network_policy;

/// Exit codes shared by `check`, `fix` and `audit`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const DENIED: u8 = 1;
    pub const UNUSABLE: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Manifests read from the command line, with the errors of those that could not be read.
pub struct Inputs {
    pub files: Vec<ManifestFile>,
    pub errors: Vec<manifest::Error>,
}

impl Inputs {
    pub fn read(paths: &[PathBuf]) -> Inputs {
        let mut errors = Vec::new();
        let expanded = manifest::expand(paths).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        let mut files = Vec::new();
        for path in expanded {
            match manifest::read(&path) {
                Ok(file) => files.push(file),
                Err(e) => errors.push(e),
            }
        }
        Inputs { files, errors }
    }

    /// The NetworkPolicies among all documents: `check` sees them as the cluster would.
    pub fn network_policies(&self) -> Vec<Arc<NetworkPolicy>> {
        let mut policies = Vec::new();
        for value in self
            .files
            .iter()
            .flat_map(|f| &f.documents)
            .filter_map(|d| d.value.as_ref())
        {
            for object in objects(value) {
                policies.extend(network_policy::from_manifest(object.1));
            }
        }
        policies
    }
}

/// The objects of a document: itself, or the items of a `kind: List`.
fn objects(value: &Value) -> Vec<(Option<usize>, &Value)> {
    if value.get("kind").and_then(Value::as_str) == Some("List")
        && let Some(items) = value.get("items").and_then(Value::as_array)
    {
        return items
            .iter()
            .enumerate()
            .map(|(i, v)| (Some(i), v))
            .collect();
    }
    vec![(None, value)]
}

/// Evaluates every object of the inputs.
pub fn evaluate(engine: &Engine, inputs: &Inputs) -> Report {
    let policies = inputs.network_policies();
    let context = Context::complete(&policies);
    let mut results = Vec::new();
    for document in inputs.files.iter().flat_map(|f| &f.documents) {
        let Some(value) = &document.value else {
            continue;
        };
        for (item, object_value) in objects(value) {
            let Some(object) = ObjectRef::from_value(object_value) else {
                continue;
            };
            let decision = engine.evaluate(&object, &context);
            let source = match item {
                Some(i) => format!("{} items[{i}]", document.source),
                None => document.source.to_string(),
            };
            results.push(CheckResult::new(
                source,
                object.kind,
                object.namespace,
                object.name,
                decision,
            ));
        }
    }
    Report { results }
}

pub fn check(engine: &Engine, paths: &[PathBuf], output: Output) -> u8 {
    let inputs = Inputs::read(paths);
    let report = evaluate(engine, &inputs);
    // Buffered: stdout is line-buffered, a write(2) per report line otherwise.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = match output {
        Output::Json => report.write_json(&mut out),
        Output::Text => report.write_text(&mut out),
    }
    .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("error: cannot write the report: {e}");
        return exit::UNUSABLE;
    }
    for error in &inputs.errors {
        eprintln!("error: {error}");
    }
    if !inputs.errors.is_empty() {
        exit::UNUSABLE
    } else if report.denied() > 0 {
        exit::DENIED
    } else {
        exit::OK
    }
}

/// What `fix` makes of one document.
enum Fixed {
    Unchanged,
    Changed(Value),
}

fn fix_document(engine: &Engine, context: &Context<'_>, value: &Value) -> Result<Fixed, String> {
    let mut fixed = value.clone();
    let mut changed = false;
    let targets: Vec<(Option<usize>, &Value)> = objects(value);
    for (item, object_value) in targets {
        let Some(object) = ObjectRef::from_value(object_value) else {
            continue;
        };
        let decision = engine.evaluate(&object, context);
        if decision.patch.0.is_empty() {
            continue;
        }
        let target = match item {
            Some(i) => &mut fixed["items"][i],
            None => &mut fixed,
        };
        json_patch::patch(target, &decision.patch.0)
            .map_err(|e| format!("the fill-in patch does not apply: {e}"))?;
        changed = true;
    }
    Ok(if changed {
        Fixed::Changed(fixed)
    } else {
        Fixed::Unchanged
    })
}

fn render(value: &Value, format: Format) -> Result<String, String> {
    match format {
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    }
}

pub struct FixOptions {
    pub in_place: bool,
    pub discard_comments: bool,
}

pub fn fix(engine: &Engine, paths: &[PathBuf], options: &FixOptions) -> u8 {
    let inputs = Inputs::read(paths);
    for error in &inputs.errors {
        eprintln!("error: {error}");
    }
    if !inputs.errors.is_empty() {
        return exit::UNUSABLE;
    }
    let policies = inputs.network_policies();
    let context = Context::complete(&policies);
    let mut failed = false;
    let mut stdout_docs: Vec<String> = Vec::new();
    for file in &inputs.files {
        let mut texts = Vec::new();
        let mut file_changed = false;
        for document in &file.documents {
            let fixed = match &document.value {
                Some(value) => fix_document(engine, &context, value),
                None => Ok(Fixed::Unchanged),
            };
            let text = match fixed {
                Ok(Fixed::Unchanged) => document.text.clone(),
                Ok(Fixed::Changed(value)) => {
                    if options.in_place
                        && !options.discard_comments
                        && manifest::has_comments(&document.text)
                    {
                        eprintln!(
                            "error: {}: this document has comments that rewriting it would drop; \
                             review `raygate fix` output on stdout, or pass --discard-comments",
                            document.source
                        );
                        failed = true;
                        document.text.clone()
                    } else {
                        match render(&value, file.format) {
                            Ok(text) => {
                                file_changed = true;
                                text
                            }
                            Err(e) => {
                                eprintln!("error: {}: {e}", document.source);
                                failed = true;
                                document.text.clone()
                            }
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", document.source);
                    failed = true;
                    document.text.clone()
                }
            };
            texts.push(text);
        }
        if options.in_place {
            if file_changed
                && !failed
                && let Some(path) = &file.path
                && let Err(e) = write_atomically(path, &join(&texts, file.format))
            {
                eprintln!("error: {}: cannot write: {e}", file.display);
                failed = true;
            }
        } else {
            stdout_docs.push(join(&texts, file.format));
        }
    }
    if !options.in_place {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (i, text) in stdout_docs.iter().enumerate() {
            let separator = if i > 0 { "---\n" } else { "" };
            if write!(out, "{separator}{text}").is_err() {
                return exit::UNUSABLE;
            }
        }
    }
    if failed { exit::UNUSABLE } else { exit::OK }
}

fn join(texts: &[String], format: Format) -> String {
    match format {
        Format::Json => texts.concat(),
        Format::Yaml => {
            let mut out = String::new();
            for (i, text) in texts.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(text);
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            out
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("raygate-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
