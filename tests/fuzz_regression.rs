//! The fuzz targets' checks (`tests/support/fuzzing.rs`) on stable: over the committed corpus
//! (`fuzz/corpus/<target>`, and `fuzz/regressions/<target>`: inputs that once failed), over the seeds it grew from (KubeRay's samples and hostile inputs:
//! deep nesting, lone surrogates, huge arrays and numbers, duplicate keys, wrong types), and
//! over 2,000 structural mutations of the samples.
//!
//! `RAYGATE_FUZZ_SEEDS=DIR cargo test --test fuzz_regression seeds` also writes the seeds to
//! `DIR/<target>/` for `scripts/fuzz`.

#[path = "support/fuzzing.rs"]
mod fuzzing;
mod support;

use std::path::{Path, PathBuf};

use raygate::manifest;
use serde_json::{Value, json};

const TARGETS: [&str; 3] = ["review_bytes", "review_object", "manifest"];

fn check(target: &str, input: &[u8]) {
    let engine = support::engine();
    match target {
        "review_bytes" => fuzzing::check_body(&engine, input),
        "review_object" => {
            if let Ok(object @ Value::Object(_)) = serde_json::from_slice::<Value>(input) {
                fuzzing::check_object(&engine, &object);
            }
        }
        "manifest" => fuzzing::check_manifest(&engine, input),
        other => unreachable!("no target {other}"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The committed corpus of `target`, and the inputs that once failed it.
fn replay_corpus(target: &str) {
    let dir = Path::new("fuzz/corpus").join(target);
    let mut files = files(&dir);
    assert!(!files.is_empty(), "{} holds no corpus", dir.display());
    let regressions = Path::new("fuzz/regressions").join(target);
    if regressions.exists() {
        files.extend(self::files(&regressions));
    }
    for file in files {
        let input = std::fs::read(&file).unwrap();
        println!("{}", file.display());
        check(target, &input);
    }
}

#[test]
fn review_bytes_corpus() {
    replay_corpus("review_bytes");
}

#[test]
fn review_object_corpus() {
    replay_corpus("review_object");
}

#[test]
fn manifest_corpus() {
    replay_corpus("manifest");
}

/// Every KubeRay sample and test manifest: `(name, text)`.
fn sample_files() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for dir in ["tests/fixtures/kuberay/samples", "tests/fixtures/manifests"] {
        paths.extend(manifest::expand(&[PathBuf::from(dir)]).unwrap());
    }
    assert!(paths.len() > 50, "the KubeRay samples are missing");
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .to_string_lossy()
                .trim_start_matches("tests/fixtures/")
                .replace('/', "-");
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Every object of the samples, as JSON.
fn sample_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for (name, text) in sample_files() {
        // A few samples are templates, not YAML.
        let Ok(file) = manifest::parse(&name, &text) else {
            continue;
        };
        for (i, document) in file.documents.into_iter().enumerate() {
            if let Some(value @ Value::Object(_)) = document.value {
                objects.push((format!("{name}-{i}.json"), value));
            }
        }
    }
    objects.push(("builder-cluster.json".into(), support::cluster("ray")));
    objects.push((
        "builder-head-pod.json".into(),
        support::ray_pod("ray", true),
    ));
    objects.push((
        "builder-worker-pod.json".into(),
        support::ray_pod("ray", false),
    ));
    objects
}

fn nest(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// A review around raw object text (which may be anything, valid JSON or not).
fn raw_review(object: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-1","kind":{{"group":"ray.io","version":"v1","kind":"RayCluster"}},"resource":{{"group":"ray.io","version":"v1","resource":"rayclusters"}},"name":"deep","namespace":"kuberay","operation":"CREATE","userInfo":{{}},"object":{object}}}}}"#
    )
    .into_bytes()
}

const DEEP: usize = 100_000;

fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let cluster = support::cluster("ray");
    let cluster_text = cluster.to_string();
    let with_spec = |spec: &str| {
        raw_review(&format!(
            r#"{{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{{"name":"x"}},"spec":{spec}}}"#
        ))
    };
    let many_ports: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("p{i}"), "containerPort": 8265}))
        .collect();
    let mut wide = cluster.clone();
    wide["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] =
        Value::Array(many_ports);
    let mut many_groups = cluster.clone();
    many_groups["spec"]["workerGroupSpecs"] = Value::Array(vec![
        json!({"template": {"spec": {"containers": [{}]}}});
        5_000
    ]);
    vec![
        ("deep-arrays", "[".repeat(DEEP).into_bytes()),
        ("deep-objects", r#"{"a":"#.repeat(DEEP).into_bytes()),
        ("deep-closed-arrays", nest("[", "1", "]", DEEP).into_bytes()),
        ("deep-spec", with_spec(&nest(r#"{"a":"#, "1", "}", DEEP))),
        ("deep-spec-129", with_spec(&nest(r#"{"a":"#, "1", "}", 129))),
        // Fields admission skips unread.
        (
            "deep-ignored-metadata",
            raw_review(&format!(
                r#"{{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{{"name":"x","a":{}}},"spec":{{}}}}"#,
                nest("[", "1", "]", DEEP)
            )),
        ),
        (
            "deep-ignored-top-level",
            format!(r#"{{"x":{},"request":null}}"#, nest(r#"{"a":"#, "1", "}", DEEP)).into_bytes(),
        ),
        ("deep-spec-120", with_spec(&nest(r#"{"a":["#, "1", "]}", 60))),
        (
            "lone-surrogates",
            raw_review(r#"{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{"name":"\ud800"},"spec":{"headGroupSpec":{"groupName":"\udfff"}}}"#),
        ),
        (
            "surrogate-pair",
            raw_review(r#"{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{"name":"\ud83d\ude00"},"spec":{}}"#),
        ),
        // Serde skips an unknown field's string without checking its UTF-8.
        ("invalid-utf8-unknown-field", {
            let mut body = raw_review(r#"{"kind":"RayCluster","metadata":{"name":"x"},"spec":{}}"#);
            body.truncate(body.len() - 1);
            body.extend(b",\"unknown\":\"\x97\x97\"}");
            body
        }),
        ("invalid-utf8", {
            let mut body = raw_review(r#"{"kind":"RayCluster","metadata":{"name":"@"}}"#);
            let at = body.iter().position(|&b| b == b'@').unwrap();
            body[at] = 0xff;
            body
        }),
        (
            "huge-numbers",
            with_spec(r#"{"headGroupSpec":{"rayStartParams":{"port":1e400},"template":{"spec":{"containers":[{"ports":[{"containerPort":18446744073709551616},{"containerPort":-1e400}]}]}}}}"#),
        ),
        (
            "duplicate-keys",
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{},"request":{}}}"#,
                String::from_utf8(raw_review("null")).unwrap(),
                String::from_utf8(raw_review(&cluster_text)).unwrap(),
            )
            .into_bytes(),
        ),
        (
            "duplicate-spec",
            raw_review(&format!(
                r#"{{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{{"name":"x"}},"spec":{},"spec":{{"headGroupSpec":5}}}}"#,
                cluster["spec"]
            )),
        ),
        ("wrong-types-request", br#"{"request":[]}"#.to_vec()),
        ("wrong-types-object", raw_review(r#""a string""#)),
        ("wrong-types-array-object", raw_review("[1,2]")),
        (
            "wrong-types-metadata",
            raw_review(r#"{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{"labels":[1]},"spec":{}}"#),
        ),
        ("wrong-types-spec", with_spec(r#"{"headGroupSpec":[],"workerGroupSpecs":{"a":1}}"#)),
        (
            "wrong-types-containers",
            with_spec(r#"{"headGroupSpec":{"rayStartParams":[],"template":{"spec":{"containers":{"0":1},"nodeSelector":"x"}}},"workerGroupSpecs":[null,1,"x",{"template":[]}]}"#),
        ),
        (
            "wrong-types-resources",
            with_spec(r#"{"headGroupSpec":{"template":{"spec":{"containers":[{"name":"h","resources":5},{"resources":{"requests":[],"limits":"x"}},{"resources":{"requests":{"cpu":null}}}]}}}}"#),
        ),
        ("wide-ports", review_of(&wide)),
        ("many-groups", review_of(&many_groups)),
        ("bom", {
            let mut body = vec![0xef, 0xbb, 0xbf];
            body.extend(review_of(&cluster));
            body
        }),
        ("trailing-garbage", {
            let mut body = review_of(&cluster);
            body.extend(b"}\0garbage");
            body
        }),
        ("empty", Vec::new()),
        ("nul", vec![0]),
    ]
}

fn review_of(object: &Value) -> Vec<u8> {
    fuzzing::review_of(object, "CREATE")
}

fn hostile_manifests() -> Vec<(&'static str, Vec<u8>)> {
    let laughs = {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut previous = 'a';
        for name in 'b'..='i' {
            let refs = vec![format!("*{previous}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
            previous = name;
        }
        text
    };
    vec![
        ("deep-flow-sequences", "[".repeat(DEEP).into_bytes()),
        ("deep-flow-closed", format!("x: {}", nest("[", "1", "]", DEEP)).into_bytes()),
        ("deep-flow-mappings", format!("x: {}", "{a: ".repeat(DEEP)).into_bytes()),
        ("deep-block-sequences", format!("{}x\n", "- ".repeat(DEEP)).into_bytes()),
        ("deep-json", nest(r#"{"a":"#, "1", "}", DEEP).into_bytes()),
        ("deep-yaml-129", format!("x: {}", nest("[", "1", "]", 129)).into_bytes()),
        ("billion-laughs", laughs.into_bytes()),
        ("many-documents", "---\nkind: X\n".repeat(20_000).into_bytes()),
        ("many-separators", "---\n".repeat(50_000).into_bytes()),
        (
            "lone-surrogate",
            b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata:\n  name: \"\\ud800\"\nspec: {}\n".to_vec(),
        ),
        (
            "json-lone-surrogate",
            br#"{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{"name":"\udc00"}}"#.to_vec(),
        ),
        ("invalid-utf8", b"kind: \xff\xfe\n".to_vec()),
        (
            "odd-scalars",
            b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: x}\nspec:\n  headGroupSpec:\n    rayStartParams: {port: 1e400, dashboard-port: 0x1F, num-cpus: .inf}\n    template:\n      spec:\n        containers:\n        - name: h\n          ports: [{containerPort: !!binary aGk=}, {containerPort: 18446744073709551616}]\n          resources: {limits: {cpu: .nan, memory: ~}}\n".to_vec(),
        ),
        (
            "merge-keys-and-tags",
            b"base: &b {cpu: '1'}\nkind: !custom RayCluster\napiVersion: ray.io/v1\nspec:\n  headGroupSpec:\n    template:\n      spec:\n        containers:\n        - resources:\n            requests:\n              <<: *b\n".to_vec(),
        ),
        (
            "duplicate-keys",
            b"kind: RayCluster\nkind: Pod\napiVersion: ray.io/v1\nspec: {}\nspec: {headGroupSpec: {}}\n".to_vec(),
        ),
        ("tabs-and-cr", b"kind:\tRayCluster\r\n---\r\n\tspec: {}\r\n".to_vec()),
        ("huge-line", format!("kind: {}\n", "x".repeat(1 << 20)).into_bytes()),
        (
            "list-of-wrong-things",
            b"kind: List\nitems: [1, null, [], {kind: RayCluster, apiVersion: ray.io/v1, spec: []}, {kind: Pod, apiVersion: v1, metadata: {labels: {ray.io/cluster: [x]}}}]\n".to_vec(),
        ),
    ]
}

/// The seeds of each target, checked here; written to `$RAYGATE_FUZZ_SEEDS/<target>/` when set.
#[test]
fn seeds() {
    let objects = sample_objects();
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for (name, object) in &objects {
        seeds.push((
            "review_object",
            name.clone(),
            object.to_string().into_bytes(),
        ));
        seeds.push(("review_bytes", name.clone(), review_of(object)));
    }
    for (name, text) in sample_files() {
        seeds.push(("manifest", name, text.into_bytes()));
    }
    for dir in [
        "tests/fixtures/admission/kube-rs",
        "tests/fixtures/admission/kubernetes-api",
    ] {
        for file in files(Path::new(dir)) {
            if file.extension().is_some_and(|e| e == "json") {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                seeds.push(("review_bytes", name, std::fs::read(&file).unwrap()));
            }
        }
    }
    for (name, body) in hostile_bodies() {
        seeds.push(("review_bytes", format!("hostile-{name}"), body));
    }
    for (name, text) in hostile_manifests() {
        seeds.push(("manifest", format!("hostile-{name}"), text));
    }
    let out = std::env::var_os("RAYGATE_FUZZ_SEEDS").map(PathBuf::from);
    for (target, name, input) in &seeds {
        let started = std::time::Instant::now();
        check(target, input);
        println!("{target}: {name} {:?}", started.elapsed());
        if let Some(out) = &out {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), input).unwrap();
        }
    }
    for target in TARGETS {
        assert!(
            seeds.iter().any(|(t, ..)| *t == target),
            "no seeds for {target}"
        );
    }
}

/// A short property run: 2,000 objects made by structural mutation of the samples.
#[test]
fn structural_mutations_keep_the_invariants() {
    let engine = support::engine();
    let objects = sample_objects();
    let mut rng = fuzzing::Rng::new(0x5eed);
    for case in 0..2_000 {
        let (name, object) = rng.pick(&objects);
        let mut object = object.clone();
        for _ in 0..=rng.below(3) {
            fuzzing::mutate(&mut object, &mut rng);
        }
        let text = object.to_string();
        // A failure names the case; rerun it from the printed object.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fuzzing::check_object(&engine, &object)
        }));
        assert!(outcome.is_ok(), "case {case} (from {name}) fails: {text}");
    }
}

/// What fuzzing found: a fill-in replaced a value of the wrong type, or had no object to go in.
/// Such fields are now reported for the user to fix.
#[test]
fn wrongly_typed_fields_are_reported_never_overwritten() {
    let engine = support::engine();
    for (pointer, value) in [
        (format!("{}/resources", support::HEAD_RAY), json!(5)),
        (
            format!("{}/resources/limits", support::HEAD_RAY),
            json!("4Gi"),
        ),
        (format!("{}/ports", support::HEAD_RAY), json!({})),
        (
            format!("{}/containers/0", support::HEAD_POD),
            json!("ray-head"),
        ),
        (format!("{}/rayStartParams", support::HEAD), json!([])),
        (
            format!("{}/nodeSelector", support::HEAD_POD),
            json!("worker"),
        ),
        (format!("{}/template/spec", support::WORKER), json!([])),
    ] {
        let mut object = support::cluster("ray");
        support::set(&mut object, &pointer, value.clone());
        let decision = support::evaluate(&object);
        assert!(
            !decision.violations.is_empty(),
            "{pointer} = {value}: nothing reported"
        );
        assert!(
            decision.patch.0.is_empty() && decision.violations.iter().all(|v| !v.fillable),
            "{pointer} = {value}: {:?}",
            decision.violations
        );
        fuzzing::check_object(&engine, &object);
    }
}
