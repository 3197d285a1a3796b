//! The `raygate` binary as a user runs it: exit codes, output shapes, errors naming file and line.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn raygate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(args)
        .output()
        .expect("raygate runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const COMPLETE: &str = "tests/fixtures/kuberay/samples/ray-cluster.complete.yaml";

#[test]
fn check_denies_a_sample_on_default_ports_with_fixes() {
    let out = raygate(&["check", "-f", COMPLETE]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("RayCluster raycluster-complete: DENIED"),
        "{text}"
    );
    assert!(
        text.contains("set containerPort: 6380 and rename it to \"gcs-server\""),
        "{text}"
    );
    assert!(text.contains("1 Ray object(s) checked: 1 denied"), "{text}");
}

#[test]
fn check_json_has_the_documented_shape() {
    let out = raygate(&["check", "-f", COMPLETE, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &report["results"][0];
    for field in [
        "source",
        "kind",
        "namespace",
        "name",
        "allowed",
        "violations",
        "patch",
    ] {
        assert!(result.get(field).is_some(), "missing {field}: {result}");
    }
    assert_eq!(result["allowed"], false);
    let violation = &result["violations"][0];
    for field in ["rule", "action", "path", "message"] {
        assert!(violation[field].is_string(), "{violation}");
    }
    assert!(
        result["patch"]
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["op"] == "add")
    );
}

#[test]
fn audit_mode_exits_zero() {
    let out = raygate(&["check", "-f", COMPLETE, "--mode", "audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("(audit mode;"));
}

#[test]
fn a_fixed_cluster_with_its_network_policy_passes() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = raygate(&[
        "fix",
        "-f",
        "tests/fixtures/manifests/fillable-cluster.yaml",
    ]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    let path = dir.path().join("fixed.yaml");
    std::fs::write(&path, &fixed.stdout).unwrap();
    let out = raygate(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
    // And check, before fixing, says the same: admission would fill and allow.
    let before = raygate(&[
        "check",
        "-f",
        "tests/fixtures/manifests/fillable-cluster.yaml",
    ]);
    assert_eq!(before.status.code(), Some(0), "{}", stdout(&before));
    assert!(stdout(&before).contains("allowed once filled in"));
}

/// The infrastructure document's five-port NetworkPolicy: one denial per missing port group,
/// each with the line to add; with those lines added, the filled cluster passes once its
/// autoscaler runs Ray 2.60.0 (the document's 2.52.0 cannot be told the GCS port 6380).
#[test]
fn the_documents_network_policy_is_denied_once_per_port_group_and_the_hints_fix_it() {
    let document = "tests/fixtures/manifests/document-network-policy.yaml";
    let out = raygate(&["check", "-f", document]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    let denied = |rule: &str| {
        report
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("DENY  {rule} ")))
            .count()
    };
    assert_eq!(denied("network-policy/blocked-ports"), 5, "{report}");
    assert_eq!(denied("network-policy/worker-ports"), 1, "{report}");
    assert_eq!(denied("network-policy/dns-egress"), 1, "{report}");
    assert_eq!(denied("network-policy/apiserver-egress"), 1, "{report}");
    assert_eq!(denied("ports/autoscaler-gcs-port"), 1, "{report}");
    for line in [
        "{protocol: TCP, port: 8301, endPort: 8400}",
        "{protocol: TCP, port: 10003, endPort: 19999}",
        "{protocol: TCP, port: 8601}",
        "{protocol: TCP, port: 52365}",
        "{protocol: UDP, port: 53}",
    ] {
        assert!(report.contains(line), "{line} in {report}");
    }

    let dir = tempfile::tempdir().unwrap();
    let fixed = raygate(&["fix", "-f", document]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    let cluster = String::from_utf8(fixed.stdout)
        .unwrap()
        .split("\n---\n")
        .next()
        .unwrap()
        .to_owned();
    let path = dir.path().join("cluster.yaml");
    let check = |cluster: &str| {
        std::fs::write(&path, cluster).unwrap();
        raygate(&[
            "check",
            "-f",
            path.to_str().unwrap(),
            "-f",
            "tests/fixtures/manifests/hinted-network-policy.yaml",
        ])
    };
    let out = check(&cluster);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    let findings: Vec<&str> = report.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(findings.len(), 2, "{report}");
    assert!(
        findings[0].contains(
            "DENY  ports/autoscaler-gcs-port  /spec/headGroupSpec/template/spec/containers/0/image"
        ),
        "{report}"
    );
    let with_image = cluster.replacen(
        "enableInTreeAutoscaling: true\n",
        "enableInTreeAutoscaling: true\n  autoscalerOptions: {image: rayproject/ray:2.60.0}\n",
        1,
    );
    assert_ne!(with_image, cluster);
    let out = check(&with_image);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
}

#[test]
fn fix_in_place_keeps_comments_and_unchanged_documents_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string("tests/fixtures/manifests/fillable-cluster.yaml").unwrap();
    assert!(source.contains('#'), "the fixture has comments");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, &source).unwrap();
    let p = path.to_str().unwrap();

    let done = raygate(&["fix", "-f", p, "--in-place"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let written = std::fs::read_to_string(&path).unwrap();
    assert_ne!(written, source);
    // Every line of the input is still there, in order: fix only inserts.
    let mut lines = written.lines();
    // (`rayStartParams: {}` becomes a block mapping.)
    for line in source.lines().filter(|l| !l.ends_with(": {}")) {
        assert!(
            lines.any(|l| l == line),
            "lost or moved: {line:?}\n{written}"
        );
    }
    assert!(
        written.contains("object-manager-port: \"8301\""),
        "{written}"
    );
    assert_fixing_again_changes_nothing(&path, &written);
}

/// `fix --in-place` on a file it has fixed leaves it as it is.
fn assert_fixing_again_changes_nothing(path: &Path, written: &str) {
    let again = raygate(&["fix", "-f", path.to_str().unwrap(), "--in-place"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        written,
        "idempotent"
    );
}

#[test]
fn fix_edits_a_json_file_in_place_and_it_stays_json() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "tests/fixtures/manifests/fillable-cluster.yaml";
    let source = std::fs::read_to_string(yaml).unwrap();
    let cluster = raygate::manifest::parse("c.yaml", &source)
        .unwrap()
        .documents[0]
        .value
        .clone()
        .unwrap();
    // What the same cluster becomes when fixed as YAML.
    let fixed_yaml = raygate(&["fix", "-f", yaml]);
    let want = raygate::manifest::parse("f.yaml", &stdout(&fixed_yaml))
        .unwrap()
        .documents[0]
        .value
        .clone()
        .unwrap();
    let pretty = serde_json::to_string_pretty(&cluster).unwrap() + "\n";
    let compact = serde_json::to_string(&cluster).unwrap() + "\n";
    for (name, text) in [("pretty.json", &pretty), ("compact.json", &compact)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let done = raygate(&["fix", "-f", p, "--in-place"]);
        assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
        assert!(!stderr(&done).contains("rewritten"), "{}", stderr(&done));
        let written = std::fs::read_to_string(&path).unwrap();
        let got: Value = serde_json::from_str(&written).expect("still strict JSON");
        assert_eq!(got, want, "{name}: the same fill-ins as the YAML");
        // Fix only inserts: every line of the input is still there, in order (one may gain a
        // comma before a new entry; an empty `{}` gains its entries).
        let mut lines = written.lines().map(|l| l.trim_end_matches(','));
        let unchanged = |l: &&str| !l.trim_end_matches(',').ends_with("{}");
        for line in text
            .lines()
            .filter(unchanged)
            .filter(|_| name == "pretty.json")
        {
            let line = line.trim_end_matches(',');
            assert!(
                lines.any(|l| l == line),
                "{name}: lost or moved: {line:?}\n{written}"
            );
        }
        assert_fixing_again_changes_nothing(&path, &written);
    }
    let pretty_fixed = std::fs::read_to_string(dir.path().join("pretty.json")).unwrap();
    // A new entry goes on a line of its own, at the indentation of the entry before it.
    let lines: Vec<&str> = pretty_fixed.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let ports = lines
        .iter()
        .position(|l| l.trim_start().starts_with("\"ports\": ["))
        .expect("a ports list was inserted");
    assert_eq!(
        indent(lines[ports]),
        indent(lines[ports - 1]),
        "{pretty_fixed}"
    );
    assert!(lines[ports - 1].ends_with(','), "{pretty_fixed}");
    let compact_fixed = std::fs::read_to_string(dir.path().join("compact.json")).unwrap();
    assert_eq!(compact_fixed.lines().count(), 1, "{compact_fixed}");
}

#[test]
fn unusable_input_exits_two_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "kind: ConfigMap\n---\nkind: RayCluster\nspec: [oops\n",
    )
    .unwrap();
    let out = raygate(&["check", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:", path.display())), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");

    let missing = raygate(&["check", "-f", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/file.yaml"));

    let usage = raygate(&["check"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn stdin_folders_and_lists_are_read() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["check", "-f", "-", "-o", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        serde_yaml_ng::from_str::<Value>(&std::fs::read_to_string(COMPLETE).unwrap()).unwrap()
    ]});
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["source"], "<stdin>:1 items[0]");

    let folder = raygate(&["check", "-f", "tests/fixtures/manifests", "-o", "json"]);
    let report: Value = serde_json::from_slice(&folder.stdout).unwrap();
    assert!(report["results"].as_array().unwrap().len() >= 2);
    assert!(Path::new("tests/fixtures/manifests").is_dir());
}

/// An item of a `kind: List` document is found at the line its document starts on, in SARIF
/// as in the other reports.
#[test]
fn sarif_places_a_list_item_at_its_documents_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.yaml");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        serde_yaml_ng::from_str::<Value>(&std::fs::read_to_string(COMPLETE).unwrap()).unwrap()
    ]});
    // The List is the second document, starting on line 5.
    let text =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: unrelated}}\n---\n{list}\n");
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();
    let json = raygate(&["check", "-o", "json", "-f", &file]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let ray: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "RayCluster")
        .collect();
    assert_eq!(ray.len(), 1);
    assert_eq!(ray[0]["source"], format!("{file}:5 items[0]"));

    let out = raygate(&["check", "-o", "sarif", "-f", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], file.as_str());
        assert_eq!(location["region"]["startLine"], 5);
    }
}

#[test]
fn policy_prints_the_effective_policy_and_rejects_a_bad_one() {
    let out = raygate(&["policy"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("kind: RayPlatformPolicy"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        raygate::policy::BUILT_IN_POLICY.replace("port: 8266,", "port: 99999,"),
    )
    .unwrap();
    let bad = raygate(&["policy", "--policy", path.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(err.contains("spec.ports.planned[2].port"), "{err}");
    let check = raygate(&["check", "-f", COMPLETE, "--policy", path.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(2),
        "a bad policy is never half-applied"
    );
}

const YAML11: &str = "tests/fixtures/yaml/ray-yaml-1-1.yaml";

fn temp_copy(dir: &tempfile::TempDir, source: &str, name: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::copy(source, &path).unwrap();
    path
}

#[test]
fn fix_keeps_yaml_1_1_types_comments_and_merges() {
    let out = raygate(&["fix", "-f", YAML11]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for kept in [
        "fsGroup: 0100",
        "defaultMode: 0755",
        "value: \"2001-12-14\"",
        "value: 'yes'",
        "# the head runs no tasks",
        "namespace: ml # trailing comment",
        "<<: &head-limits",
    ] {
        assert!(text.contains(kept), "{kept} in\n{text}");
    }
    // The merged limits stay; requests come beside them, not instead of them.
    let fixed = raygate::manifest::parse("fixed.yaml", &text).unwrap();
    let cluster = fixed.documents[0].value.as_ref().unwrap();
    let head = &cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0];
    assert_eq!(head["resources"]["limits"]["memory"], "8Gi");
    assert_eq!(head["resources"]["requests"]["memory"], "8Gi");
    assert_eq!(
        cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"],
        493
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn fix_in_place_keeps_crlf_line_endings_and_the_bom() {
    let dir = tempfile::tempdir().unwrap();
    for (source, crlf, bom) in [
        ("tests/fixtures/yaml/ray-crlf.yaml", true, false),
        ("tests/fixtures/yaml/ray-bom.yaml", false, true),
    ] {
        let path = temp_copy(&dir, source, "m.yaml");
        let out = raygate(&["fix", "-f", path.to_str().unwrap(), "--in-place"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("min-worker-port"), "{text}");
        let lone_lf = text
            .match_indices('\n')
            .filter(|(i, _)| *i == 0 || &text[i - 1..*i] != "\r")
            .count();
        if crlf {
            assert_eq!(lone_lf, 0, "mixed line endings:\n{text:?}");
        } else {
            assert!(!text.contains('\r'));
        }
        assert_eq!(bytes.starts_with(b"\xef\xbb\xbf"), bom, "{source}");
    }
}

#[test]
fn a_json_stream_in_a_yaml_file_is_read() {
    let out = raygate(&[
        "check",
        "-f",
        "tests/fixtures/yaml/ray-json-stream.yaml",
        "-o",
        "json",
    ]);
    // Both documents are read: the policy selects the cluster's only Pod, its head, whose
    // traffic to itself no policy blocks, and the rest is filled in.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"].as_array().unwrap().len(), 2);
    let fixed = raygate(&["fix", "-f", "tests/fixtures/yaml/ray-json-stream.yaml"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    let reread = raygate::manifest::parse("fixed.yaml", &stdout(&fixed)).unwrap();
    assert_eq!(reread.documents.len(), 2);
}

#[test]
fn f_takes_several_paths_after_one_flag() {
    let out = raygate(&[
        "check",
        "-f",
        COMPLETE,
        "tests/fixtures/manifests/fillable-cluster.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.iter().any(|s| s.starts_with(COMPLETE)),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.contains("fillable-cluster")),
        "{sources:?}"
    );
    let help = stdout(&raygate(&["fix", "--help"]));
    assert!(help.contains("-f, --filename <PATH>..."), "{help}");
    assert!(help.contains("list several after one"), "{help}");
    let help = stdout(&raygate(&["check", "--help"]));
    assert!(
        help.contains("Exit codes (for CI and Argo CD gates)"),
        "{help}"
    );
}

#[test]
fn audit_mode_says_what_happened() {
    let out = raygate(&["check", "-f", COMPLETE, "--mode", "audit"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("allowed with warnings (audit mode;"),
        "{text}"
    );
    assert!(!text.contains("  DENY "), "{text}");
    assert!(text.contains("(denied when enforcing)"), "{text}");
    let strict = raygate(&[
        "check",
        "-f",
        COMPLETE,
        "--mode",
        "audit",
        "--fail-on",
        "warn",
    ]);
    assert_eq!(strict.status.code(), Some(3));
}

#[test]
fn fail_on_fill_and_empty() {
    let fillable = "tests/fixtures/manifests/fillable-cluster.yaml";
    assert_eq!(raygate(&["check", "-f", fillable]).status.code(), Some(0));
    let out = raygate(&["check", "-f", fillable, "--fail-on", "fill"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("raygate fix"), "{}", stderr(&out));
    // Denials come first: 1, not 3.
    assert_eq!(
        raygate(&["check", "-f", COMPLETE, "--fail-on", "fill,empty"])
            .status
            .code(),
        Some(1)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let empty = raygate(&["check", "-f", d]);
    assert_eq!(empty.status.code(), Some(0));
    assert!(
        stderr(&empty).contains("no Ray object"),
        "{}",
        stderr(&empty)
    );
    assert_eq!(
        raygate(&["check", "-f", d, "--fail-on", "empty"])
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn errors_do_not_repeat_themselves() {
    let out = raygate(&["policy", "--policy", "no/such/policy.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        raygate::policy::BUILT_IN_POLICY.replace("port: 8266,", "port: 99999,"),
    )
    .unwrap();
    let err = stderr(&raygate(&["policy", "--policy", path.to_str().unwrap()]));
    assert_eq!(
        err.matches("spec.ports.planned[2].port").count(),
        1,
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_refused_with_their_lines() {
    let out = raygate(&[
        "check",
        "-f",
        "tests/fixtures/yaml/refused-duplicate-nested.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("refused-duplicate-nested.yaml:4: invalid YAML: duplicate key \"name\" (first on line 3)"),
        "{err}"
    );
}

/// `-o sarif` is valid SARIF 2.1.0 (the official schema), with every rule described and each
/// finding at its file and line; `-o junit` has one test case per Ray object, failed when
/// admission would deny it.
#[test]
fn sarif_and_junit_reports_for_ci() {
    let samples = "tests/fixtures/kuberay/samples";
    // KubeRay's own samples (not the templated ones under extra/).
    let mut files: Vec<String> = std::fs::read_dir(samples)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    // And one that passes (its NetworkPolicy covers it).
    files.push("tests/fixtures/manifests/fillable-cluster.yaml".to_owned());
    let check = |format: &str| {
        let mut args = vec!["check", "-o", format, "-f"];
        args.extend(files.iter().map(String::as_str));
        raygate(&args)
    };
    let out = check("sarif");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The official schema's `language` patterns have a stray `]`, which the meta-schema's
    // regex check refuses; raygate writes no `language`, so drop the typo'd bracket.
    let text = std::fs::read_to_string("tests/fixtures/sarif/sarif-schema-2.1.0.json")
        .unwrap()
        .replace("{2}]?$", "{2}?$");
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), raygate::rule_id::RuleId::ALL.len());
    assert!(
        rules
            .iter()
            .all(|r| !r["help"]["text"].as_str().unwrap().is_empty())
    );
    let results = run["results"].as_array().unwrap();
    assert!(results.len() > 100, "{}", results.len());
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        let location = &result["locations"][0]["physicalLocation"];
        assert!(
            location["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("tests/fixtures/")
        );
        assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
    }
    assert!(results.iter().any(|r| r["level"] == "error"));
    assert!(
        results
            .iter()
            .any(|r| r["level"] == "note" && r["properties"]["fillable"] == true)
    );

    // The same objects as JUnit test cases.
    let json = check("json");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let checked: Vec<&serde_json::Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["coverage"] == "cluster" || r["coverage"] == "pod")
        .collect();
    let denied = checked.iter().filter(|r| r["allowed"] == false).count();
    let out = check("junit");
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains(&format!(
            "<testsuite name=\"raygate check\" tests=\"{}\" skipped=\"0\" errors=\"0\" failures=\"{denied}\">",
            checked.len()
        )),
        "{}",
        &xml[..xml.len().min(400)]
    );
    assert_eq!(xml.matches("<testcase ").count(), checked.len());
    assert_eq!(xml.matches("<failure ").count(), denied);
    assert!(denied > 0 && denied < checked.len());
}

/// `-n` gives objects that name no namespace the one they will be applied to (an Argo CD
/// Application's destination), for NetworkPolicies and Ray objects alike.
#[test]
fn check_namespace_is_the_one_objects_without_one_get() {
    let job = "tests/fixtures/kuberay/samples/ray-job.sample.yaml";
    let out = raygate(&["check", "-f", job, "-n", "ml"]);
    assert!(
        stdout(&out).contains("RayJob ml/rayjob-sample"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("in namespace \"ml\""),
        "{}",
        stdout(&out)
    );
    let out = raygate(&["check", "-f", job]);
    assert!(
        stdout(&out).contains("in namespace \"default\""),
        "{}",
        stdout(&out)
    );
}

/// `check` reads files one at a time and collects NetworkPolicies first from the files that
/// can hold one: a kind spelled with escapes must still count, from any file of the input.
#[test]
fn a_network_policy_in_another_file_counts_however_its_kind_is_spelled() {
    let fixed = raygate(&[
        "fix",
        "-f",
        "tests/fixtures/manifests/fillable-cluster.yaml",
    ]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    let text = stdout(&fixed);
    let (cluster, policy) = text.split_once("\n---\n").expect("two documents");
    assert!(policy.contains("kind: NetworkPolicy"), "{policy}");
    for spelling in [
        "kind: NetworkPolicy",
        r#"kind: "Network\x50olicy""#,
        r#"kind: "\u004EetworkPolicy""#,
        "kind: \"Network\\\n  Policy\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        // The cluster's file sorts first, so its policy is read after it.
        std::fs::write(dir.path().join("a-cluster.yaml"), cluster).unwrap();
        std::fs::write(
            dir.path().join("b-policy.yaml"),
            policy.replace("kind: NetworkPolicy", spelling),
        )
        .unwrap();
        let out = raygate(&["check", "-f", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{spelling}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(": ok"),
            "{spelling}: {}",
            stdout(&out)
        );
    }
    // Without the policy the same cluster is not covered.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-cluster.yaml"), cluster).unwrap();
    let out = raygate(&["check", "-f", dir.path().to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// The RayCluster of `fillable-cluster.yaml` without its NetworkPolicy.
fn uncovered_cluster() -> String {
    let text = std::fs::read_to_string("tests/fixtures/manifests/fillable-cluster.yaml").unwrap();
    let policy_at = text.find("kind: NetworkPolicy").unwrap();
    let end = text[..policy_at].rfind("---").unwrap();
    text[..end].to_owned()
}

#[test]
fn fix_adds_the_network_policy_a_cluster_lacks_and_check_then_admits_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, uncovered_cluster()).unwrap();
    let p = path.to_str().unwrap();
    let before = raygate(&["check", "-f", p]);
    assert_eq!(before.status.code(), Some(1), "{}", stdout(&before));
    assert!(stdout(&before).contains("network-policy/missing"));

    let fixed = raygate(&["fix", "-f", p, "--in-place"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    assert!(
        stderr(&fixed).contains("added NetworkPolicy \"raygate-raycluster-raycluster-autoscaler\""),
        "{}",
        stderr(&fixed)
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.starts_with("# Written by raygate for RayCluster"),
        "{written}"
    );
    let kinds: Vec<Value> = raygate::manifest::parse("w", &written)
        .unwrap()
        .documents
        .iter()
        .filter_map(|d| d.value.as_ref().map(|v| v["kind"].clone()))
        .collect();
    assert_eq!(kinds, ["NetworkPolicy", "RayCluster"], "applied first");
    assert!(
        written.contains("\n---\n# A RayCluster that leaves to raygate"),
        "{written}"
    );
    assert!(
        written.contains("# Between the cluster's Pods"),
        "{written}"
    );
    let after = raygate(&["check", "-f", p]);
    assert_eq!(after.status.code(), Some(0), "{}", stdout(&after));

    // Run again: the cluster is covered now, and nothing is added twice.
    let again = raygate(&["fix", "-f", p, "--in-place"]);
    assert!(
        stderr(&again).contains("0 NetworkPolicy(ies) added"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
}

#[test]
fn fix_never_edits_a_policy_that_exists_and_the_denial_keeps_the_lines_to_add() {
    let source = "tests/fixtures/manifests/document-network-policy.yaml";
    let fixed = raygate(&["fix", "-f", source]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    assert!(
        stderr(&fixed).contains("0 NetworkPolicy(ies) added"),
        "{}",
        stderr(&fixed)
    );
    let original = std::fs::read_to_string(source).unwrap();
    let policy = &original[original.find("kind: NetworkPolicy").unwrap()..];
    assert!(
        stdout(&fixed).contains(policy.trim_end()),
        "{}",
        stdout(&fixed)
    );
    let check = raygate(&["check", "-f", source]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("add `- {protocol: TCP, port: "),
        "{}",
        stdout(&check)
    );
}

#[test]
fn fix_can_leave_network_policies_out_and_writes_a_json_files_policy_beside_it() {
    let cluster = raygate::manifest::parse("c.yaml", &uncovered_cluster())
        .unwrap()
        .documents[0]
        .value
        .clone()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cluster).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let skipped = raygate(&["fix", "-f", p, "--no-network-policies"]);
    assert!(
        !stdout(&skipped).contains("NetworkPolicy"),
        "{}",
        stdout(&skipped)
    );
    let done = raygate(&["fix", "-f", p, "--in-place"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let beside = dir
        .path()
        .join("cluster.raygate-raycluster-raycluster-autoscaler.json");
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(&beside).unwrap()).unwrap();
    assert_eq!(policy["kind"], "NetworkPolicy");
    let _: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("the cluster's file is still one JSON object");
    let check = raygate(&["check", "-f", p, "-f", beside.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
}

#[test]
fn fix_writes_a_blocking_policys_replacement_beside_it_for_review() {
    let dir = tempfile::tempdir().unwrap();
    let source = "tests/fixtures/manifests/document-network-policy.yaml";
    let path = dir.path().join("ray.yaml");
    std::fs::copy(source, &path).unwrap();
    let p = path.to_str().unwrap();
    let original = std::fs::read_to_string(&path).unwrap();
    let out = raygate(&["fix", "-f", p, "--in-place", "--write-replacements"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let policy: Value = raygate::manifest::parse("p", &original)
        .unwrap()
        .documents
        .iter()
        .filter_map(|d| d.value.clone())
        .find(|v| v["kind"] == "NetworkPolicy")
        .unwrap();
    let name = policy["metadata"]["name"].as_str().unwrap();
    let replacement = dir.path().join(format!("{name}.replacement.yaml"));
    let text = std::fs::read_to_string(&replacement).expect("the replacement is written");
    assert!(
        text.starts_with(&format!("# Replaces NetworkPolicy {name:?}")),
        "{text}"
    );
    let written = std::fs::read_to_string(&path).unwrap();
    let kept = &original[original.find("kind: NetworkPolicy").unwrap()..];
    assert!(
        written.contains(kept.trim_end()),
        "the policy itself is never edited"
    );
    // The cluster, filled in, with the replacement instead of the policy: no network finding
    // (this cluster's Ray is too old for its autoscaler, which is another rule's).
    let cluster_only = &written[..written.find("kind: NetworkPolicy").unwrap()];
    let cluster_only = &cluster_only[..cluster_only.rfind("---").unwrap()];
    let fixed = dir.path().join("fixed.yaml");
    std::fs::write(&fixed, cluster_only).unwrap();
    let before = raygate(&["check", "-f", p]);
    assert!(
        stdout(&before).contains("network-policy/"),
        "{}",
        stdout(&before)
    );
    let check = raygate(&[
        "check",
        "-f",
        fixed.to_str().unwrap(),
        "-f",
        replacement.to_str().unwrap(),
    ]);
    assert!(
        !stdout(&check).contains("network-policy/"),
        "{}",
        stdout(&check)
    );
}

/// The README's Ray-version example: a Ray 2.9.3 cluster is judged by Ray 2.9.3's `ray start`:
/// an option only later Rays have is denied with the first that has it, and the dashboard's
/// gRPC port, random on 2.9.3, is filled in; without the option, the fixed cluster passes.
#[test]
fn a_ray_2_9_cluster_is_judged_by_ray_2_9() {
    let source = "tests/fixtures/manifests/ray-2.9-cluster.yaml";
    let out = raygate(&["check", "-f", source]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(
        report.contains("`ray start` of Ray 2.9.3 (image tag) has no option --enable-resource-isolation, so Ray exits at once; of the measured versions, Ray 2.46.0 is the first that has it"),
        "{report}"
    );
    assert!(
        report.contains("Ray 2.9.3 (image tag) picks a random port for the dashboard head's gRPC server); set dashboard-grpc-port: \"8602\""),
        "{report}"
    );
    assert_eq!(report.matches("DENY  ").count(), 1, "{report}");

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(source)
        .unwrap()
        .replace("      enable-resource-isolation: \"true\"\n", "");
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap();
    let fixed = raygate(&["fix", "-f", path, "--no-network-policies"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    let fixed_path = dir.path().join("fixed.yaml");
    std::fs::write(&fixed_path, &fixed.stdout).unwrap();
    let text = String::from_utf8(fixed.stdout).unwrap();
    assert!(text.contains("dashboard-grpc-port: \"8602\""), "{text}");
    let check = raygate(&["check", "-f", fixed_path.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
}
