//! kubectl's own manifest reader as the oracle (tests/yaml-oracle, built from the Go module
//! proxy by scripts/yaml-oracle.sh): raygate must read every fixture into the JSON kubectl
//! would send, and `fix` must write text that kubectl reads as the input with raygate's patch
//! applied. Fails, never skips, when the oracle cannot be built.

#[path = "support/go_oracle.rs"]
mod go_oracle;

use std::path::{Path, PathBuf};
use std::process::Command;

use raygate::commands::{Inputs, fix_document};
use raygate::manifest::{self, ManifestFile};
use raygate::ray::ObjectRef;
use raygate::{Context, Engine, Policy};
use serde_json::Value;

fn oracle() -> PathBuf {
    go_oracle::build("scripts/yaml-oracle.sh", "the YAML oracle")
}

/// kubectl's documents for each file, or its error.
fn kubectl_reads(oracle: &Path, files: &[PathBuf]) -> Vec<Result<Vec<Value>, String>> {
    let out = Command::new(oracle)
        .args(files)
        .output()
        .expect("the oracle runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    lines
        .into_iter()
        .map(|line| match line.get("error") {
            Some(e) => Err(e.as_str().unwrap().to_owned()),
            None => Ok(line["docs"].as_array().cloned().unwrap_or_default()),
        })
        .collect()
}

fn raygate_reads(path: &Path) -> Result<Vec<Value>, String> {
    let file = manifest::read(path).map_err(|e| e.to_string())?;
    Ok(file.documents.into_iter().filter_map(|d| d.value).collect())
}

fn corpus() -> Vec<PathBuf> {
    let files = manifest::expand(&[PathBuf::from("tests/fixtures")]).unwrap();
    assert!(files.len() > 100, "{} files", files.len());
    files
}

/// Files raygate refuses on purpose although kubectl reads them: duplicate keys, which kubectl
/// resolves to the last value and kustomize refuses.
fn refused_on_purpose(path: &Path) -> bool {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("refused-")
}

#[test]
fn raygate_reads_every_fixture_as_kubectl_does() {
    let oracle = oracle();
    let files = corpus();
    let expected = kubectl_reads(&oracle, &files);
    let mut documents = 0;
    let mut refused = 0;
    let mut failures = Vec::new();
    for (path, kubectl) in files.iter().zip(expected) {
        let ours = raygate_reads(path);
        match (kubectl, ours) {
            (Ok(k), Ok(r)) if k == r => documents += k.len(),
            (Ok(k), Ok(r)) => failures.push(format!(
                "{}: kubectl reads\n  {}\nraygate reads\n  {}",
                path.display(),
                serde_json::to_string(&k).unwrap(),
                serde_json::to_string(&r).unwrap()
            )),
            (Err(_), Err(_)) => refused += 1,
            (Ok(_), Err(e)) if refused_on_purpose(path) => {
                assert!(e.contains("duplicate key"), "{e}");
                refused += 1;
            }
            (Err(k), Ok(r)) => failures.push(format!(
                "{}: kubectl refuses it ({k}) but raygate reads {}",
                path.display(),
                serde_json::to_string(&r).unwrap()
            )),
            (Ok(_), Err(e)) => failures.push(format!(
                "{}: kubectl reads it but raygate refuses it: {e}",
                path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!(
        "{} files: {documents} documents read alike, {refused} refused by both or on purpose",
        files.len()
    );
    assert!(refused >= 5, "the corpus has broken files");
}

fn apply_fill_ins(engine: &Engine, context: &Context<'_>, value: &Value) -> Value {
    let mut out = value.clone();
    let list = value.get("kind").and_then(Value::as_str) == Some("List");
    let targets: Vec<(Option<usize>, &Value)> = match value.get("items").and_then(Value::as_array) {
        Some(items) if list => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Some(i), v))
            .collect(),
        _ => vec![(None, value)],
    };
    for (item, object) in targets {
        let Some(object) = ObjectRef::from_value(object) else {
            continue;
        };
        let decision = engine.evaluate(&object, context);
        let target = match item {
            Some(i) => &mut out["items"][i],
            None => &mut out,
        };
        json_patch::patch(target, &decision.patch.0).unwrap();
    }
    out
}

/// For every document: kubectl's JSON of `fix`'s output equals kubectl's JSON of the input
/// with raygate's patch applied.
#[test]
fn fix_output_reads_back_as_the_patched_input_in_kubectl() {
    let oracle = oracle();
    let engine = Engine::new(Policy::built_in());
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut changed = 0;
    for path in corpus() {
        let Ok(file) = manifest::read(&path) else {
            continue;
        };
        let file: ManifestFile = file;
        let read = Inputs {
            files: vec![file],
            errors: Vec::new(),
            default_namespace: None,
        };
        let policies = read.network_policies();
        let context = Context::complete(&policies);
        let file = &read.files[0];
        let mut text = String::new();
        let mut at = 0;
        for document in &file.documents {
            let fixed = fix_document(&engine, &context, document)
                .unwrap_or_else(|e| panic!("{}: {e}", document.source));
            if let Some(fixed) = fixed {
                assert!(
                    fixed.rewritten.is_none(),
                    "{}: not edited in place: {:?}",
                    document.source,
                    fixed.rewritten
                );
                text.push_str(&file.text[at..document.range.start]);
                text.push_str(&fixed.text);
                at = document.range.end;
                changed += 1;
            }
        }
        if at == 0 {
            continue;
        }
        text.push_str(&file.text[at..]);
        let name = format!(
            "{}-{}",
            outputs.len(),
            path.file_name().unwrap().to_string_lossy()
        );
        let out = dir.path().join(name);
        std::fs::write(&out, text).unwrap();
        inputs.push(path);
        outputs.push(out);
    }
    assert!(changed >= 20, "only {changed} documents had fill-ins");
    let before = kubectl_reads(&oracle, &inputs);
    let after = kubectl_reads(&oracle, &outputs);
    for ((path, before), after) in inputs.iter().zip(before).zip(after) {
        let before = before.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let after = after.unwrap_or_else(|e| panic!("{} fixed: {e}", path.display()));
        let file = manifest::read(path).unwrap();
        let read = Inputs {
            files: vec![file],
            errors: Vec::new(),
            default_namespace: None,
        };
        let policies = read.network_policies();
        let context = Context::complete(&policies);
        let want: Vec<Value> = before
            .iter()
            .map(|v| apply_fill_ins(&engine, &context, v))
            .collect();
        assert_eq!(after.len(), want.len(), "{}", path.display());
        for (a, w) in after.iter().zip(&want) {
            assert!(
                a == w,
                "{}: fix changed more than the fill-ins",
                path.display()
            );
        }
    }
    eprintln!("{changed} documents filled in over {} files", inputs.len());
}
