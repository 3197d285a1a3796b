//! `check` and `fix`: the engine over manifests on disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::engine::{Context, Engine};
use crate::manifest::{self, Format, ManifestFile};
use crate::ray::{ObjectRef, Target};
use crate::report::{CheckResult, Origin, Output, Report, ReportWriter};
use crate::rule_id::RuleId;
use crate::rules::network_policy;
use crate::yaml_edit;

/// Exit codes shared by `check`, `fix` and `audit`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const DENIED: u8 = 1;
    pub const UNUSABLE: u8 = 2;
    /// Nothing denied, but a `--fail-on` condition holds.
    pub const FAIL_ON: u8 = 3;
}

/// Conditions `check --fail-on` fails on besides denials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// An object is allowed only once filled in.
    Fill,
    /// A finding is a warning.
    Warn,
    /// No Ray object among the inputs.
    Empty,
}

/// Manifests read from the command line, with the errors of those that could not be read.
pub struct Inputs {
    pub files: Vec<ManifestFile>,
    pub errors: Vec<manifest::Error>,
    /// The namespace of objects that name none, as `kubectl apply -n` would give them.
    pub default_namespace: Option<String>,
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
        Inputs {
            files,
            errors,
            default_namespace: None,
        }
    }

    /// The NetworkPolicies among all documents: `check` sees them as the cluster would.
    pub fn network_policies(&self) -> Vec<Arc<NetworkPolicy>> {
        self.files
            .iter()
            .flat_map(|file| file_network_policies(file, self.default_namespace.as_deref()))
            .collect()
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
    for file in &inputs.files {
        let collect = &mut |result| {
            results.push(result);
            Ok(())
        };
        evaluate_file(
            engine,
            &context,
            inputs.default_namespace.as_deref(),
            file,
            collect,
        )
        .expect("collecting into a Vec cannot fail");
    }
    Report { results }
}

/// Where results go: a report being written, or a Vec.
type ResultSink<'a> = &'a mut dyn FnMut(CheckResult) -> std::io::Result<()>;

/// Judges every object in `file` and hands each result to `sink`.
fn evaluate_file(
    engine: &Engine,
    context: &Context<'_>,
    default_namespace: Option<&str>,
    file: &ManifestFile,
    sink: ResultSink<'_>,
) -> std::io::Result<()> {
    for document in &file.documents {
        let Some(value) = &document.value else {
            continue;
        };
        for (item, object_value) in objects(value) {
            let Some(mut object) = ObjectRef::from_value(object_value) else {
                continue;
            };
            if object.namespace.is_none() {
                object.namespace = default_namespace;
            }
            let decision = engine.evaluate(&object, context);
            let source = Origin::Manifest {
                document: document.source.clone(),
                item,
            };
            sink(CheckResult::new(
                source,
                object.kind,
                object.namespace,
                object.name,
                decision,
            ))?;
        }
    }
    Ok(())
}

/// The NetworkPolicies of one file, namespaced as `kubectl apply -n` would.
fn file_network_policies(
    file: &ManifestFile,
    default_namespace: Option<&str>,
) -> Vec<Arc<NetworkPolicy>> {
    let mut policies = Vec::new();
    for value in file.documents.iter().filter_map(|d| d.value.as_ref()) {
        for (_, object) in objects(value) {
            policies.extend(network_policy::from_manifest(object).map(|mut policy| {
                if policy.metadata.namespace.is_none() {
                    Arc::make_mut(&mut policy).metadata.namespace =
                        default_namespace.map(str::to_owned);
                }
                policy
            }));
        }
    }
    policies
}

/// Where each NetworkPolicy of the inputs was read, by (namespace, name).
fn policy_files(inputs: &Inputs) -> std::collections::BTreeMap<(String, String), PathBuf> {
    let mut files = std::collections::BTreeMap::new();
    for file in &inputs.files {
        let Some(path) = &file.path else {
            continue;
        };
        for policy in file_network_policies(file, inputs.default_namespace.as_deref()) {
            let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
            let name = policy.metadata.name.clone().unwrap_or_default();
            files.insert((namespace.to_owned(), name), path.clone());
        }
    }
    files
}

/// Whether manifest text can hold a document of kind NetworkPolicy. The kind is spelled out
/// in the text unless a YAML double-quoted scalar or a JSON string spells it with a hex
/// escape (`\x`, `\u`, `\U`) or splits it with an escaped line break; anchors, aliases and
/// merge keys all repeat text that is in the file.
pub fn may_hold_network_policy(text: &str) -> bool {
    text.contains("NetworkPolicy")
        || text
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\\' && matches!(w[1], b'x' | b'u' | b'U' | b'\n' | b'\r'))
}

/// How much file text `check` keeps between its passes instead of reading it again.
const KEPT_TEXT_BUDGET: usize = 16 << 20;

/// What `check` read besides its results.
pub struct Checked {
    pub errors: Vec<manifest::Error>,
    pub files: usize,
    pub documents: usize,
}

/// `check` over files one at a time, so memory holds one file, not every document.
/// NetworkPolicies count for every object, so a first pass collects them, parsing only the
/// files that can hold one ([`may_hold_network_policy`]).
pub fn check_paths(
    engine: &Engine,
    paths: &[PathBuf],
    default_namespace: Option<&str>,
    sink: ResultSink<'_>,
) -> std::io::Result<Checked> {
    let mut errors = Vec::new();
    let expanded = manifest::expand(paths).unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    let first = FirstPass::read(&expanded, default_namespace, &mut errors);
    let context = Context::complete(&first.policies);
    let (mut files, mut documents) = (0, 0);
    for (path, kept) in expanded.iter().zip(first.kept) {
        let read;
        let file = if path.as_os_str() == "-" {
            match &first.stdin {
                Some(file) => file,
                None => continue,
            }
        } else {
            match reread(path, kept) {
                Ok(file) => {
                    read = file;
                    &read
                }
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        };
        files += 1;
        documents += file.documents.len();
        evaluate_file(engine, &context, default_namespace, file, &mut *sink)?;
    }
    Ok(Checked {
        errors,
        files,
        documents,
    })
}

/// What `check`'s first pass keeps: every NetworkPolicy, standard input parsed (it can be
/// read once) and file texts up to a budget (the rest are read again).
struct FirstPass {
    stdin: Option<ManifestFile>,
    policies: Vec<Arc<NetworkPolicy>>,
    /// Per path, its text when kept.
    kept: Vec<Option<String>>,
}

impl FirstPass {
    fn read(
        expanded: &[PathBuf],
        default_namespace: Option<&str>,
        errors: &mut Vec<manifest::Error>,
    ) -> FirstPass {
        let mut first = FirstPass {
            stdin: None,
            policies: Vec::new(),
            kept: vec![None; expanded.len()],
        };
        let mut budget = KEPT_TEXT_BUDGET;
        for (path, kept) in expanded.iter().zip(&mut first.kept) {
            if path.as_os_str() == "-" {
                match manifest::read(path) {
                    Ok(file) => {
                        first
                            .policies
                            .extend(file_network_policies(&file, default_namespace));
                        first.stdin = Some(file);
                    }
                    Err(e) => errors.push(e),
                }
                continue;
            }
            // Unreadable and unparsable files are reported by the second pass.
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            if may_hold_network_policy(&text)
                && let Ok(file) = manifest::parse(&path.display().to_string(), &text)
            {
                first
                    .policies
                    .extend(file_network_policies(&file, default_namespace));
            }
            if text.len() <= budget {
                budget -= text.len();
                *kept = Some(text);
            }
        }
        first
    }
}

/// A file for the second pass: its kept text parsed, or the file read again.
fn reread(path: &Path, kept: Option<String>) -> manifest::Result<ManifestFile> {
    match kept {
        Some(text) => manifest::parse_owned(&path.display().to_string(), text).map(|mut file| {
            file.path = Some(path.to_owned());
            file
        }),
        None => manifest::read(path),
    }
}

pub fn check(
    engine: &Engine,
    paths: &[PathBuf],
    namespace: Option<String>,
    output: Output,
    fail_on: &[FailOn],
) -> u8 {
    // Buffered: stdout is line-buffered, a write(2) per report line otherwise.
    let stdout = std::io::stdout();
    let mut writer = ReportWriter::new(
        output,
        engine.policy(),
        std::io::BufWriter::new(stdout.lock()),
    );
    let checked = check_paths(engine, paths, namespace.as_deref(), &mut |result| {
        writer.push(result)
    });
    let (
        Checked {
            errors,
            files,
            documents,
        },
        tally,
    ) = match checked.and_then(|checked| Ok((checked, writer.finish()?))) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: cannot write the report: {e}");
            return exit::UNUSABLE;
        }
    };
    for error in &errors {
        eprintln!("error: {error}");
    }
    if !errors.is_empty() {
        return exit::UNUSABLE;
    }
    let checked = tally.checked;
    if checked == 0 {
        eprintln!(
            "raygate check: no Ray object (RayCluster, RayJob, RayService, RayCronJob or Ray Pod) in {files} file(s) with {documents} document(s){}",
            if fail_on.contains(&FailOn::Empty) {
                "; failing (--fail-on empty)"
            } else {
                ""
            }
        );
    }
    let failed_on = fail_on.iter().find(|condition| match condition {
        FailOn::Empty => checked == 0,
        FailOn::Fill => tally.with_fill_ins > 0,
        FailOn::Warn => tally.with_warnings > 0,
    });
    if tally.denied > 0 {
        exit::DENIED
    } else if let Some(condition) = failed_on {
        if *condition != FailOn::Empty {
            eprintln!(
                "raygate check: failing on {} (--fail-on)",
                match condition {
                    FailOn::Fill =>
                        "objects allowed only once filled in; run `raygate fix` and commit the result",
                    _ => "warnings",
                }
            );
        }
        exit::FAIL_ON
    } else {
        exit::OK
    }
}

/// The `add`s of a document's fill-ins (pointer and value) and the patched document.
type FillIns = (Vec<(String, Value)>, Value);

/// The fill-ins of one document as `add`s at document level, with the patched document.
fn fill_ins(
    engine: &Engine,
    context: &Context<'_>,
    value: &Value,
) -> Result<Option<FillIns>, String> {
    let mut fixed = value.clone();
    let mut adds = Vec::new();
    for (item, object_value) in objects(value) {
        let Some(object) = ObjectRef::from_value(object_value) else {
            continue;
        };
        let decision = engine.evaluate(&object, context);
        if decision.patch.0.is_empty() {
            continue;
        }
        let prefix = item.map(|i| format!("/items/{i}")).unwrap_or_default();
        for op in &decision.patch.0 {
            match op {
                json_patch::PatchOperation::Add(add) => {
                    adds.push((format!("{prefix}{}", add.path), add.value.clone()));
                }
                other => return Err(format!("the fill-in patch has a {other:?} operation")),
            }
        }
        let target = match item {
            Some(i) => &mut fixed["items"][i],
            None => &mut fixed,
        };
        json_patch::patch(target, &decision.patch.0)
            .map_err(|e| format!("the fill-in patch does not apply: {e}"))?;
    }
    Ok((!adds.is_empty()).then_some((adds, fixed)))
}

/// What `fix` makes of one document: its new text and, when the text could not be edited in
/// place, what the rewrite lost.
pub struct FixedDocument {
    pub text: String,
    pub rewritten: Option<String>,
    /// The document's value with the fill-ins.
    pub value: Value,
}

/// Fills in one document. Untouched documents are `None`.
pub fn fix_document(
    engine: &Engine,
    context: &Context<'_>,
    document: &manifest::Document,
) -> Result<Option<FixedDocument>, String> {
    let Some(value) = &document.value else {
        return Ok(None);
    };
    let Some((adds, expected)) = fill_ins(engine, context, value)? else {
        return Ok(None);
    };
    let ops: Vec<yaml_edit::Add<'_>> = adds
        .iter()
        .map(|(path, value)| yaml_edit::Add { path, value })
        .collect();
    let syntax = match document.format {
        Format::Json => yaml_edit::Syntax::Json,
        Format::Yaml => yaml_edit::Syntax::Yaml,
    };
    match yaml_edit::apply(&document.text, value, &ops, &expected, syntax) {
        Ok(text) => Ok(Some(FixedDocument {
            text,
            rewritten: None,
            value: expected,
        })),
        // The newline after the value lies outside the document's range and is kept.
        Err(reason) if syntax == yaml_edit::Syntax::Json => Ok(Some(FixedDocument {
            text: serde_json::to_string_pretty(&expected).map_err(|e| e.to_string())?,
            rewritten: Some(reason),
            value: expected,
        })),
        Err(reason) => {
            let newline = if document.text.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let bom = if document.text.starts_with('\u{feff}') {
                "\u{feff}"
            } else {
                ""
            };
            let text = format!("{bom}{}", yaml_edit::render(&expected, newline));
            match manifest::parse_yaml(&text) {
                Ok(Some(reread)) if reread == expected => Ok(Some(FixedDocument {
                    text,
                    rewritten: Some(reason),
                    value: expected,
                })),
                _ => Err(format!(
                    "cannot write the fill-ins without changing other values ({reason})"
                )),
            }
        }
    }
}

pub struct FixOptions {
    pub in_place: bool,
    pub discard_comments: bool,
    /// Write the NetworkPolicy of each Ray cluster that none of the inputs selects.
    pub network_policies: bool,
    /// For a cluster whose NetworkPolicies block what Ray needs, write the complete
    /// replacement next to the policy's file for review; the policy itself is never edited.
    pub write_replacements: bool,
}

/// The NetworkPolicies `fix` writes: those the inputs hold, and the ones written so far.
struct NewPolicies<'a> {
    existing: &'a [Arc<NetworkPolicy>],
    /// Where each NetworkPolicy of the inputs was read, by (namespace, name); set when
    /// replacements are to be written.
    replacing: Option<std::collections::BTreeMap<(String, String), PathBuf>>,
    /// (namespace, name) of each policy written.
    written: std::collections::BTreeSet<(String, String)>,
}

impl NewPolicies<'_> {
    /// The NetworkPolicy of each Ray cluster in `value` that no policy selects, as text to
    /// follow the document, with a note on stderr for each.
    fn for_document(
        &mut self,
        engine: &Engine,
        value: &Value,
        format: Format,
        source: &str,
    ) -> Vec<(String, String)> {
        let mut texts = Vec::new();
        for (_, object_value) in objects(value) {
            let Some(object) = ObjectRef::from_value(object_value) else {
                continue;
            };
            let Target::Cluster(cluster) = Target::of(&object) else {
                continue;
            };
            let namespace = object.namespace.unwrap_or("default");
            let selecting = network_policy::selecting_cluster(&cluster, namespace, self.existing);
            if !selecting.is_empty() {
                self.write_replacement(engine, &object, &cluster, &selecting, source);
                continue;
            }
            let plan = engine.policy();
            let addresses = &plan.spec().network_policy.api_server_addresses;
            let Some(generated) =
                network_policy::generate(&cluster, object.namespace, plan, addresses)
            else {
                eprintln!(
                    "warning: {source}: {} {:?} has no NetworkPolicy, and its Pods carry no label raygate can select them by",
                    object.kind, object.name
                );
                continue;
            };
            if !self
                .written
                .insert((namespace.to_owned(), generated.name.clone()))
            {
                continue;
            }
            eprintln!(
                "raygate fix: {source}: no NetworkPolicy selects the Pods of {} {:?}; added NetworkPolicy {:?}",
                object.kind, object.name, generated.name
            );
            let text = match format {
                Format::Yaml => generated.text.trim_end().to_owned(),
                Format::Json => serde_json::to_string_pretty(&generated.object)
                    .expect("a JSON value serialises"),
            };
            texts.push((generated.name, text));
        }
        texts
    }

    /// When `selecting` (the cluster's policies) leave a network-policy finding, the
    /// generated policy goes beside the first of them as `<name>.replacement.yaml`.
    fn write_replacement(
        &self,
        engine: &Engine,
        object: &ObjectRef<'_>,
        cluster: &crate::ray::ClusterSpec<'_>,
        selecting: &[String],
        source: &str,
    ) {
        let Some(files) = &self.replacing else {
            return;
        };
        let decision = engine.evaluate(object, &Context::complete(self.existing));
        let blocked = decision.violations.iter().any(|v| {
            v.rule.family() == Some(crate::rule_id::Family::NetworkPolicy)
                && !matches!(v.rule, RuleId::NotVerified | RuleId::PodLabel)
        });
        if !blocked {
            return;
        }
        let plan = engine.policy();
        let addresses = &plan.spec().network_policy.api_server_addresses;
        let Some(generated) = network_policy::generate(cluster, object.namespace, plan, addresses)
        else {
            return;
        };
        let namespace = object.namespace.unwrap_or("default").to_owned();
        let Some(policy_file) = files.get(&(namespace, selecting[0].clone())) else {
            eprintln!(
                "warning: {source}: NetworkPolicy {:?} is in no file among the inputs (standard input, or the cluster); no replacement written",
                selecting[0]
            );
            return;
        };
        let path = policy_file.with_file_name(format!("{}.replacement.yaml", selecting[0]));
        let listed: Vec<String> = selecting.iter().map(|n| format!("{n:?}")).collect();
        let generated = generated.renamed(&selecting[0]);
        let others = if selecting.len() > 1 {
            format!(", then delete {}", listed[1..].join(", "))
        } else {
            String::new()
        };
        let text = format!(
            "# Replaces NetworkPolicy {} for {} {:?}: review it and apply it{others}.\n{}",
            listed.join(", "),
            object.kind,
            object.name,
            generated.text
        );
        match write_atomically(&path, &text) {
            Ok(()) => eprintln!(
                "raygate fix: {source}: the NetworkPolicies of {} {:?} block what Ray needs; wrote the replacement {}",
                object.kind,
                object.name,
                path.display()
            ),
            Err(e) => eprintln!("error: {}: cannot write: {e}", path.display()),
        }
    }
}

/// The file's text with the fixed documents in place of the old; everything between them
/// (separators, comments) is kept.
fn splice_file(file: &ManifestFile, fixed: &[(usize, String)]) -> String {
    let mut out = String::with_capacity(file.text.len());
    let mut at = 0;
    for (index, text) in fixed {
        let range = &file.documents[*index].range;
        out.push_str(&file.text[at..range.start]);
        out.push_str(text);
        at = range.end;
    }
    out.push_str(&file.text[at..]);
    out
}

/// `live`: NetworkPolicies of a cluster that count as existing besides the inputs'.
pub fn fix(
    engine: &Engine,
    paths: &[PathBuf],
    live: &[Arc<NetworkPolicy>],
    options: &FixOptions,
) -> u8 {
    let inputs = Inputs::read(paths);
    for error in &inputs.errors {
        eprintln!("error: {error}");
    }
    if !inputs.errors.is_empty() {
        return exit::UNUSABLE;
    }
    let policies = inputs.network_policies();
    let context = Context::complete(&policies);
    let existing: Vec<Arc<NetworkPolicy>> = policies.iter().chain(live).cloned().collect();
    let mut new_policies = options.network_policies.then(|| NewPolicies {
        existing: &existing,
        replacing: options.write_replacements.then(|| policy_files(&inputs)),
        written: std::collections::BTreeSet::new(),
    });
    let mut failed = false;
    let mut filled = 0;
    let mut stdout_texts: Vec<String> = Vec::new();
    for file in &inputs.files {
        let FixedFile {
            fixed,
            failed: file_failed,
            separate,
        } = fix_file(engine, &context, file, options, new_policies.as_mut());
        failed |= file_failed;
        filled += fixed.len();
        let text = splice_file(file, &fixed);
        if options.in_place {
            for (name, text) in &separate {
                failed |= !write_beside(file, name, text);
            }
            if !fixed.is_empty()
                && !file_failed
                && let Some(path) = &file.path
                && let Err(e) = write_atomically(path, &text)
            {
                eprintln!("error: {}: cannot write: {e}", file.display);
                failed = true;
            }
        } else {
            stdout_texts.extend(separate.iter().map(|(_, text)| text.clone()));
            stdout_texts.push(text);
        }
    }
    if !options.in_place && write_stream(&stdout_texts).is_err() {
        return exit::UNUSABLE;
    }
    let written = new_policies.map_or(0, |n| n.written.len());
    eprintln!(
        "raygate fix: {filled} document(s) filled in, {written} NetworkPolicy(ies) added{}",
        if options.in_place { " and written" } else { "" }
    );
    if failed { exit::UNUSABLE } else { exit::OK }
}

/// The fixed documents of one file (index and new text), and whether one could not be fixed.
/// What `fix` makes of one file.
struct FixedFile {
    /// The fixed documents: index and new text.
    fixed: Vec<(usize, String)>,
    /// Whether a document could not be fixed.
    failed: bool,
    /// NetworkPolicies that cannot follow their cluster inside the file (JSON stays one
    /// object per file): the policy's name and its text.
    separate: Vec<(String, String)>,
}

fn fix_file(
    engine: &Engine,
    context: &Context<'_>,
    file: &ManifestFile,
    options: &FixOptions,
    mut new_policies: Option<&mut NewPolicies<'_>>,
) -> FixedFile {
    let mut fixed = Vec::new();
    let mut failed = false;
    let mut separate = Vec::new();
    for (index, document) in file.documents.iter().enumerate() {
        let done = fix_document(engine, context, document);
        let value = match &done {
            Ok(Some(done)) => Some(&done.value),
            Ok(None) => document.value.as_ref(),
            Err(_) => None,
        };
        let mut added = match (value, new_policies.as_deref_mut()) {
            (Some(value), Some(new)) => {
                new.for_document(engine, value, document.format, &document.source.to_string())
            }
            _ => Vec::new(),
        };
        if document.format == Format::Json {
            separate.append(&mut added);
        }
        // A document that needs no fill-in keeps its text; its policy goes before it.
        let done = match done {
            Ok(None) if !added.is_empty() => Ok(Some(FixedDocument {
                text: document.text.clone(),
                rewritten: None,
                value: Value::Null,
            })),
            other => other,
        };
        match done.map(|d| {
            d.map(|mut d| {
                for (_, text) in &added {
                    d.text = precede(&d.text, text);
                }
                d
            })
        }) {
            Ok(None) => {}
            Ok(Some(done)) => {
                if let Some(reason) = &done.rewritten {
                    let lost = "its comments, anchors, key order and layout are not kept";
                    if options.in_place
                        && !options.discard_comments
                        && manifest::has_comments(&document.text)
                    {
                        eprintln!(
                            "error: {}: the fill-ins cannot be inserted into the text ({reason}) and rewriting the document would drop its comments; review `raygate fix` output on stdout, or pass --discard-comments",
                            document.source
                        );
                        failed = true;
                        continue;
                    }
                    eprintln!(
                        "warning: {}: the fill-ins cannot be inserted into the text ({reason}); the document is rewritten and {lost}",
                        document.source
                    );
                }
                fixed.push((index, done.text));
            }
            Err(e) => {
                eprintln!("error: {}: {e}", document.source);
                failed = true;
            }
        }
    }
    FixedFile {
        fixed,
        failed,
        separate,
    }
}

/// Writes a NetworkPolicy for a JSON file beside it, as `<file stem>.<policy name>.json`.
fn write_beside(file: &ManifestFile, name: &str, text: &str) -> bool {
    let Some(path) = &file.path else {
        return true;
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("manifest");
    let beside = path.with_file_name(format!("{stem}.{name}.json"));
    match write_atomically(&beside, &format!("{text}\n")) {
        Ok(()) => {
            eprintln!("raygate fix: wrote {}", beside.display());
            true
        }
        Err(e) => {
            eprintln!("error: {}: cannot write: {e}", beside.display());
            false
        }
    }
}

/// `added` as the document before `text` in the YAML stream: `kubectl apply -f` creates the
/// NetworkPolicy first, so the cluster's Pods are admitted at their first try.
fn precede(text: &str, added: &str) -> String {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let added = added.replace('\n', newline);
    let (bom, rest) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    format!("{bom}{added}{newline}---{newline}{rest}")
}

/// The files' texts to stdout as one stream.
fn write_stream(texts: &[String]) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut previous_open = false;
    for (i, text) in texts.iter().enumerate() {
        // Files are joined into one stream; a file without a final newline gets one first.
        let separator = match (i, previous_open) {
            (0, _) => "",
            (_, true) => "\n---\n",
            (_, false) => "---\n",
        };
        write!(out, "{separator}{text}")?;
        previous_open = !text.is_empty() && !text.ends_with('\n');
    }
    out.flush()
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("raygate-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// `raygate ray-start`: for each case on `input` (a JSON line with `role`, `group` and the
/// cluster's `annotations`, and optionally the RayCluster's `cluster` name (default
/// `raycluster`), `namespace` (default `default`), `head` group spec (for a worker) and
/// `autoscaling`), the container command KubeRay builds and the one `ray start` raygate reads
/// from it, or why it refuses.
pub fn ray_start_cases(
    input: impl std::io::BufRead,
    mut out: impl Write,
    ray: &'static crate::ray_version::VersionFacts,
) -> anyhow::Result<()> {
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at_line = |e: &dyn std::fmt::Display| anyhow::anyhow!("stdin line {}: {e}", n + 1);
        let case: Value = serde_json::from_str(&line).map_err(|e| at_line(&e))?;
        let result = ray_start_case(&case, ray).map_err(|e| at_line(&e))?;
        writeln!(out, "{result}")?;
    }
    Ok(())
}

/// One `ray-start` case: the command KubeRay builds, the `ray start` raygate reads from it (or
/// why it refuses) and the group's Pod labels.
fn ray_start_case(
    case: &Value,
    ray: &'static crate::ray_version::VersionFacts,
) -> anyhow::Result<Value> {
    use crate::ray::{NodeGroup, Role};
    use crate::ray_command;
    let role = match case.get("role").and_then(Value::as_str) {
        Some("head") => Role::Head,
        Some("worker") => Role::Worker,
        other => anyhow::bail!("role is {other:?}, not head or worker"),
    };
    let empty = Value::Object(Default::default());
    let group_spec = case.get("group").unwrap_or(&empty);
    let group = NodeGroup {
        role,
        name: group_spec
            .get("groupName")
            .and_then(Value::as_str)
            .unwrap_or("headgroup"),
        spec: group_spec,
        path: json_patch::jsonptr::PointerBuf::new(),
    };
    let overwrite = crate::ray::annotation_is_true(
        case.get("annotations"),
        crate::ray::OVERWRITE_CMD_ANNOTATION,
    ) || crate::ray::annotation_is_true(
        group_spec.pointer("/template/metadata/annotations"),
        crate::ray::OVERWRITE_CMD_ANNOTATION,
    );
    // The cluster around the group: its name, namespace, head group (whose port and
    // head Service a worker's --address names) and autoscaling.
    let (cluster, namespace) = (
        case_text(case, "cluster", "raycluster")?,
        case_text(case, "namespace", "default")?,
    );
    let head = match role {
        Role::Head => Some(group_spec),
        Role::Worker => case.get("head").filter(|h| !h.is_null()),
    };
    let autoscaling = match case.get("autoscaling") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => anyhow::bail!("autoscaling is {other}, not a boolean"),
    };
    let context = ray_command::ClusterContext {
        name: &cluster,
        namespace: &namespace,
        head,
        autoscaling,
    };
    let labels = ray_start_labels(&cluster, &group, overwrite);
    Ok(match ray_command::kuberay_params(&group, &context) {
        Ok(params) => {
            let launch = ray_command::launch(&group, &params, overwrite);
            launched(case, &launch, refused_param(&group, ray), labels, ray)
        }
        Err(why) => serde_json::json!({"id": case.get("id"), "refused": why.0, "labels": labels}),
    })
}

/// A case's text field, `default` when absent or null.
fn case_text(case: &Value, field: &str, default: &str) -> anyhow::Result<String> {
    match case.get(field) {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => anyhow::bail!("{field} is {other}, not a string"),
    }
}

/// Why raygate refuses the group's first unreadable rayStartParams value, if it does.
fn refused_param(
    group: &crate::ray::NodeGroup<'_>,
    ray: &'static crate::ray_version::VersionFacts,
) -> Option<String> {
    use crate::ray_command;
    let mut refused = None;
    for (key, value) in group.ray_start_params().into_iter().flatten() {
        let word = ray_command::param_value(value)
            .ok_or_else(|| {
                ray_command::Refusal(
                    format!("{key} is not a string"),
                    ray_command::Cause::Unfollowable,
                )
            })
            .and_then(|text| ray_command::param_word(key, &text))
            .and_then(|word| ray_command::option_value(key, word, ray));
        if let Err(why) = word {
            refused.get_or_insert(why.0);
        }
    }
    refused
}

/// The Pod labels of a RayCluster `cluster`'s `group`.
fn ray_start_labels(
    cluster: &str,
    group: &crate::ray::NodeGroup<'_>,
    overwrite: bool,
) -> std::collections::BTreeMap<String, String> {
    let spec_holder = Value::Object(Default::default());
    let cluster_spec = crate::ray::ClusterSpec {
        source: crate::ray::ClusterSource::RayCluster,
        name: cluster,
        spec: &spec_holder,
        path: json_patch::jsonptr::PointerBuf::new(),
        root: &spec_holder,
        overwrite_cmd: overwrite,
    };
    network_policy::pod_labels(&cluster_spec, group)
}

/// A case whose command KubeRay builds: the command, and the `ray start` read from it.
fn launched(
    case: &Value,
    launch: &crate::ray_command::Launch,
    refused: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    ray: &'static crate::ray_version::VersionFacts,
) -> Value {
    use crate::ray_command;
    let script = ray_command::shell_script(&launch.argv)
        .ok()
        .flatten()
        .map(str::to_owned);
    let (start, refusal) = match ray_command::effective_start(launch, ray) {
        Ok(start) => (Some(start), None),
        Err(why) => (None, Some(why.0)),
    };
    serde_json::json!({
        "id": case.get("id"),
        "argv": launch.argv,
        "script": script,
        "env": {ray_command::GENERATED_CMD_VAR: launch.generated},
        "start": start.as_ref().map(|s| &s.words),
        "options": start.as_ref().map(|s| s.options.iter().map(|(k, v)| (k.to_string(), v.shown())).collect::<std::collections::BTreeMap<_, _>>()),
        "refused": refused.or(refusal),
        "labels": labels,
    })
}
