//! End to end: kubectl against a real kube-apiserver (with the KubeRay operator), calling
//! raygate through the webhook configurations in deploy/. Run by tests/e2e/run.sh, which
//! builds the tools and starts the control plane; `cargo test` alone skips these.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

mod support;

const NEEDS: &str = "needs the e2e control plane: run tests/e2e/run.sh";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {NEEDS}"))
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env("E2E_KUBECTL"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A namespace of the test's own (the control plane has no namespace controller, so
/// namespaces are never reused).
fn namespace(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("e2e-{test}-{nanos:x}");
    kubectl_ok(&["create", "namespace", &name], None);
    name
}

/// raygate serve as a child process, with its own certificates.
struct Raygate {
    child: Child,
    /// Everything raygate has logged (JSON lines, default level).
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    port: u16,
    metrics_port: u16,
    ca_bundle: String,
    _certs: tempfile::TempDir,
}

impl Raygate {
    fn start(mode: &str) -> Raygate {
        Raygate::start_with(mode, &[])
    }

    /// raygate with cluster access under its ServiceAccount's identity (deploy/'s RBAC).
    fn start_in_cluster(mode: &str, extra: &[&str]) -> Raygate {
        apply_raygate_rbac();
        let kubeconfig = env("E2E_RAYGATE_KUBECONFIG");
        let mut args = vec!["--kubeconfig", kubeconfig.as_str()];
        args.extend_from_slice(extra);
        let raygate = Raygate::start_with(mode, &args);
        wait_until("raygate's caches sync", Duration::from_secs(30), || {
            raygate.get("/readyz").0 == 200
        });
        raygate
    }

    fn start_with(mode: &str, extra: &[&str]) -> Raygate {
        let certs = tempfile::tempdir().unwrap();
        let made = Command::new(env!("CARGO_BIN_EXE_raygate"))
            .args([
                "certs",
                "--host",
                "127.0.0.1",
                "--host",
                "localhost",
                "--out-dir",
            ])
            .arg(certs.path())
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made.stderr));
        let ca_bundle = text(&made.stdout).trim().to_owned();
        let served = support::serve::serve(|command| {
            command
                .args(["--shutdown-delay", "0", "--mode", mode])
                // Where deploy/'s RBAC lets the audit hold its Lease.
                .env("POD_NAMESPACE", "raygate-system")
                .arg("--tls-cert")
                .arg(certs.path().join("tls.crt"))
                .arg("--tls-key")
                .arg(certs.path().join("tls.key"))
                .args(extra);
        });
        let lines = served.log;
        // Keep draining the log so that raygate never blocks on a full pipe.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Raygate {
            logs,
            port: served.port,
            metrics_port: served.metrics_port,
            child: served.child,
            ca_bundle,
            _certs: certs,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops raygate as Kubernetes does: SIGTERM, then wait for it to exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Status code and body of a GET on raygate's TLS port.
    fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        let body = text(&out.stdout);
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// Requests answered, by kind and decision, from raygate's own counter.
    fn requests(&self) -> Vec<(String, String, String, u64)> {
        self.metrics()
            .lines()
            .filter_map(|l| l.strip_prefix("raygate_admission_requests_total{"))
            .map(|l| {
                let (labels, count) = l.split_once("} ").unwrap();
                let label = |key: &str| {
                    labels
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                        .unwrap_or("")
                        .trim_end_matches('"')
                        .to_owned()
                };
                (
                    label("kind"),
                    label("operation"),
                    label("decision"),
                    count.parse().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Raygate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The webhook configurations of deploy/base, pointed at a local raygate by URL.
struct Registration {
    name: String,
}

fn render_deploy(dir: &str) -> Vec<Value> {
    let rendered = kubectl_ok(&["kustomize", dir], None);
    serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

impl Registration {
    fn new(raygate: &Raygate, test: &str) -> Registration {
        let name = format!("raygate-e2e-{test}");
        for mut config in render_deploy("deploy/base").into_iter().filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
            )
        }) {
            config["metadata"]["name"] = json!(name);
            for webhook in config["webhooks"].as_array_mut().unwrap() {
                let path = webhook["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                webhook["clientConfig"] = json!({
                    "url": format!("https://127.0.0.1:{}{path}", raygate.port),
                    "caBundle": raygate.ca_bundle,
                });
            }
            kubectl_ok(&["apply", "-f", "-"], Some(&config.to_string()));
        }
        Registration { name }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        for kind in [
            "validatingwebhookconfiguration",
            "mutatingwebhookconfiguration",
        ] {
            kubectl(&["delete", kind, &self.name, "--ignore-not-found"], None);
        }
    }
}

/// deploy/'s namespace, ServiceAccount and RBAC, as raygate runs under them.
fn apply_raygate_rbac() {
    for doc in render_deploy("deploy/base").iter().filter(|d| {
        matches!(
            d["kind"].as_str(),
            Some(
                "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Role"
                    | "RoleBinding"
                    | "ServiceAccount"
                    | "Namespace"
            )
        )
    }) {
        kubectl_ok(&["apply", "-f", "-"], Some(&doc.to_string()));
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from("tests/fixtures").join(name)).unwrap()
}

/// The fillable cluster of the CLI tests, without its NetworkPolicy.
fn fillable_cluster(name: &str) -> String {
    fixture("manifests/fillable-cluster.yaml")
        .split("---\n")
        .next()
        .unwrap()
        .replace("raycluster-autoscaler", name)
        .replace("  namespace: kuberay\n", "")
}

/// KubeRay's own sample, on KubeRay's default ports.
fn default_ports_cluster() -> String {
    fixture("kuberay/samples/ray-cluster.sample.yaml")
}

/// Waits until raygate answers for `ns` (webhook configurations take a moment to load).
fn wait_for_webhook(ns: &str) {
    wait_until(
        "the API server calls raygate",
        Duration::from_secs(20),
        || {
            let out = kubectl(
                &["apply", "-n", ns, "--dry-run=server", "-f", "-"],
                Some(&default_ports_cluster()),
            );
            text(&out.stderr).contains("raygate")
        },
    );
}

fn setup(test: &str, mode: &str) -> (Raygate, Registration, String) {
    let raygate = Raygate::start(mode);
    let registration = Registration::new(&raygate, test);
    let ns = namespace(test);
    if mode == "enforce" {
        wait_for_webhook(&ns);
    }
    (raygate, registration, ns)
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn default_ports_are_denied_with_rules_and_fixes() {
    let (raygate, _registration, ns) = setup("deny", "enforce");
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&default_ports_cluster()),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("admission webhook \"ray.validate.raygate.dev\" denied the request"),
        "{err}"
    );
    assert!(err.contains("ports/head-port"), "{err}");
    assert!(err.contains("set containerPort: 6380"), "{err}");
    let listed = kubectl_ok(&["get", "rayclusters", "-n", &ns, "-o", "name"], None);
    assert!(listed.trim().is_empty(), "nothing stored: {listed}");

    // Object contents never reach the log at the default level: a secret in the spec of a
    // denied object is not there, while the decision is.
    let secret = "s3cr3t-token-value-7f9c";
    let with_secret = default_ports_cluster().replace(
        "        - name: ray-head\n",
        &format!("        - name: ray-head\n          env: [{{name: TOKEN, value: {secret}}}]\n"),
    );
    let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&with_secret));
    assert!(!out.status.success());
    std::thread::sleep(Duration::from_millis(200));
    let logs = raygate.logs.lock().unwrap().clone();
    assert!(logs.contains("\"decision\":\"denied\""), "{logs}");
    assert!(!logs.contains(secret), "object contents were logged");
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_fillable_cluster_is_stored_filled_in_and_valid() {
    let (_raygate, _registration, ns) = setup("fill", "enforce");
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("filled")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored: Value = serde_json::from_str(&kubectl_ok(
        &["get", "raycluster", "filled", "-n", &ns, "-o", "json"],
        None,
    ))
    .unwrap();
    let head = &stored["spec"]["headGroupSpec"];
    let ports: Vec<(String, u64)> = head["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    for planned in [
        ("gcs-server", 6380),
        ("client", 10002),
        ("dashboard", 8266),
        ("serve", 8001),
        ("metrics", 8081),
    ] {
        assert!(
            ports.contains(&(planned.0.to_owned(), planned.1)),
            "{ports:?}"
        );
    }
    assert_eq!(head["rayStartParams"]["port"], "6380");
    assert_eq!(head["rayStartParams"]["object-manager-port"], "8301");
    let worker = &stored["spec"]["workerGroupSpecs"][0];
    assert_eq!(
        worker["template"]["spec"]["nodeSelector"],
        json!({"node-role": "worker"})
    );
    assert_eq!(
        worker["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}})
    );
    assert_eq!(
        head["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "2Gi"
    );
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn server_side_dry_run_gives_the_same_decision_and_stores_nothing() {
    let (_raygate, _registration, ns) = setup("dryrun", "enforce");
    let denied = kubectl(
        &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
        Some(&default_ports_cluster()),
    );
    assert!(!denied.status.success());
    assert!(text(&denied.stderr).contains("ports/head-port"));
    let allowed = kubectl(
        &[
            "apply",
            "-n",
            &ns,
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&fillable_cluster("dry")),
    );
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    let preview: Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(
        preview["spec"]["headGroupSpec"]["rayStartParams"]["port"],
        "6380"
    );
    let listed = kubectl_ok(&["get", "rayclusters", "-n", &ns, "-o", "name"], None);
    assert!(listed.trim().is_empty(), "dry run stored {listed}");
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn warnings_reach_kubectl() {
    let (_raygate, _registration, ns) = setup("warn", "enforce");
    let manifest = fillable_cluster("warned").replace(
        "        - name: ray-head\n          image: rayproject/ray:2.52.0\n",
        "        - name: ray-head\n          image: rayproject/ray:2.52.0\n          ports:\n          - {name: ray-serve, containerPort: 8001}\n",
    );
    let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Warning: ports/serve-port-name:"), "{err}");
    assert!(err.contains("Warning: raygate filled in"), "{err}");
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn audit_mode_denies_nothing_and_annotates_the_audit_log() {
    let (_raygate, _registration, ns) = setup("audit", "audit");
    let mut applied = None;
    wait_until(
        "raygate's warnings in audit mode",
        Duration::from_secs(20),
        || {
            let name = format!("audited-{}", applied.as_ref().map_or(0, |_: &Output| 1));
            let out = kubectl(
                &["apply", "-n", &ns, "-f", "-"],
                Some(&default_ports_cluster().replace("raycluster-kuberay", &name)),
            );
            assert!(
                out.status.success(),
                "audit mode denied: {}",
                text(&out.stderr)
            );
            let warned = text(&out.stderr).contains("Warning: ports/head-port");
            applied = Some(out);
            if !warned {
                kubectl(
                    &["delete", "raycluster", "-n", &ns, &name, "--wait=false"],
                    None,
                );
            }
            warned
        },
    );
    let log = std::fs::read_to_string(env("E2E_AUDIT_LOG")).unwrap();
    let annotated = log.lines().any(|l| {
        l.contains(&ns)
            && l.contains("\"ray.validate.raygate.dev/violations\"")
            && l.contains("ports/head-port")
    });
    assert!(
        annotated,
        "no raygate audit annotation for {ns} in the audit log"
    );
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn the_operators_pods_pass_and_a_pod_on_the_master_is_denied() {
    let (raygate, _registration, ns) = setup("operator", "enforce");
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("reconciled")),
    );
    wait_until(
        "the operator creates head and worker Pods",
        Duration::from_secs(90),
        || {
            let pods = kubectl_ok(
                &[
                    "get",
                    "pods",
                    "-n",
                    &ns,
                    "-l",
                    "ray.io/cluster=reconciled",
                    "-o",
                    "name",
                ],
                None,
            );
            pods.lines().count() >= 2
        },
    );
    let pods: Value = serde_json::from_str(&kubectl_ok(
        &[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "ray.io/cluster=reconciled",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    for pod in pods["items"].as_array().unwrap() {
        assert_eq!(pod["spec"]["nodeSelector"]["node-role"], "worker", "{pod}");
        let ports = pod["spec"]["containers"][0]["ports"].to_string();
        assert!(!ports.contains("8080") && ports.contains("8081"), "{ports}");
    }
    let pod_reviews: u64 = raygate
        .requests()
        .iter()
        .filter(|(kind, op, decision, _)| kind == "Pod" && op == "CREATE" && decision != "denied")
        .map(|r| r.3)
        .sum();
    assert!(pod_reviews >= 2, "raygate saw {pod_reviews} Pod reviews");

    let bound = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "by-hand", "labels": {"ray.io/cluster": "reconciled", "ray.io/node-type": "worker"}},
        "spec": {"nodeName": "gpu-node", "nodeSelector": {"node-role": "worker"}, "containers": [{
            "name": "ray-worker", "image": "rayproject/ray:2.52.0",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&bound.to_string()));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("placement/node-name"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_rayjob_on_default_ports_is_denied_before_any_cluster_exists() {
    let (_raygate, _registration, ns) = setup("rayjob", "enforce");
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fixture("kuberay/samples/ray-job.sample.yaml")),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/spec/rayClusterSpec/headGroupSpec"), "{err}");
    let clusters = kubectl_ok(
        &["get", "rayclusters,rayjobs", "-n", &ns, "-o", "name"],
        None,
    );
    assert!(clusters.trim().is_empty(), "{clusters}");
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn only_ray_objects_reach_raygate_and_its_failure_policy_holds_when_down() {
    let (mut raygate, _registration, ns) = setup("scope", "enforce");
    let before = raygate.requests();
    assert!(
        before.iter().any(|(kind, ..)| kind == "RayCluster"),
        "raygate has answered the API server: {before:?}"
    );
    let plain_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"nodeName": "gpu-node", "containers": [{"name": "c", "image": "busybox",
            "ports": [{"containerPort": 6379}]}]}});
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&plain_pod.to_string()),
    );
    kubectl_ok(&["create", "configmap", "-n", &ns, "plain"], None);
    kubectl_ok(
        &[
            "create",
            "configmap",
            "-n",
            "kube-system",
            &format!("plain-{ns}"),
        ],
        None,
    );
    kubectl_ok(
        &["label", "node", "worker-1", &format!("seen-{ns}=yes")],
        None,
    );
    // A Ray cluster in kube-system is out of raygate's reach by design.
    let system = default_ports_cluster().replace("raycluster-kuberay", &format!("sys-{ns}"));
    kubectl_ok(&["apply", "-n", "kube-system", "-f", "-"], Some(&system));
    assert_eq!(
        raygate.requests(),
        before,
        "non-Ray requests reached raygate"
    );

    raygate.stop();
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("while-down")),
    );
    assert!(!out.status.success(), "Ray objects fail closed");
    assert!(
        text(&out.stderr).contains("failed calling webhook"),
        "{}",
        text(&out.stderr)
    );
    let ray_pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ray-while-down", "labels": {"ray.io/cluster": "x"}},
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.52.0"}]}});
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&ray_pod.to_string()));

    // The blast radius of a dead raygate: everything that is not a Ray object goes on,
    // and none of it waits for a webhook timeout.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("lease-{ns}"), "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "worker-2", "leaseDurationSeconds": 40}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}]}}}});
    let policy = covering_policy("web", "web");
    let steps: Vec<(&str, Vec<String>, Option<String>)> = vec![
        (
            "a node",
            vec![
                "label".into(),
                "node".into(),
                "worker-2".into(),
                format!("seen-{ns}=yes"),
            ],
            None,
        ),
        (
            "a node lease",
            vec!["apply".into(), "-f".into(), "-".into()],
            Some(lease.to_string()),
        ),
        (
            "kube-system",
            vec![
                "create".into(),
                "configmap".into(),
                "-n".into(),
                "kube-system".into(),
                format!("down-{ns}"),
            ],
            None,
        ),
        (
            "raygate's namespace",
            vec![
                "create".into(),
                "configmap".into(),
                "-n".into(),
                "raygate-system".into(),
                format!("down-{ns}"),
            ],
            None,
        ),
        (
            "a namespace",
            vec!["create".into(), "namespace".into(), format!("{ns}-more")],
            None,
        ),
        (
            "a ConfigMap",
            vec![
                "create".into(),
                "configmap".into(),
                "-n".into(),
                ns.clone(),
                "still-fine".into(),
            ],
            None,
        ),
        (
            "a Deployment",
            vec![
                "apply".into(),
                "-n".into(),
                ns.clone(),
                "-f".into(),
                "-".into(),
            ],
            Some(deployment.to_string()),
        ),
        (
            "a plain Pod",
            vec![
                "delete".into(),
                "pod".into(),
                "-n".into(),
                ns.clone(),
                "plain".into(),
                "--wait=false".into(),
            ],
            None,
        ),
        (
            "a NetworkPolicy",
            vec![
                "apply".into(),
                "-n".into(),
                ns.clone(),
                "-f".into(),
                "-".into(),
            ],
            Some(policy.clone()),
        ),
        (
            "a NetworkPolicy update",
            vec![
                "label".into(),
                "networkpolicy".into(),
                "-n".into(),
                ns.clone(),
                "web".into(),
                "changed=yes".into(),
            ],
            None,
        ),
        (
            "a NetworkPolicy delete",
            vec![
                "delete".into(),
                "networkpolicy".into(),
                "-n".into(),
                ns.clone(),
                "web".into(),
            ],
            None,
        ),
    ];
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"raygate-system"}}"#),
    );
    for (what, args, stdin) in &steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        kubectl_ok(&args, stdin.as_deref());
        let took = started.elapsed();
        // The webhooks' timeoutSeconds is 5: anything that waited on raygate would show.
        assert!(
            took < Duration::from_secs(4),
            "{what} took {took:?} with raygate down"
        );
    }
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn every_deploy_manifest_passes_a_server_side_dry_run_and_rbac_is_least_privilege() {
    let work = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args(["-r", "deploy"])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(copy.success());
    let deploy = work.path().join("deploy");
    let certs = deploy.join("overlays/self-signed/certs");
    let made = Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["certs", "--host", "raygate.raygate-system.svc", "--out-dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success());
    let ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(certs.join("ca.crt")).unwrap());

    // The NetworkPolicy controller's component, stacked as its comment says.
    let stacked = deploy.join("overlays/generate-network-policies");
    std::fs::create_dir(&stacked).unwrap();
    std::fs::write(
        stacked.join("kustomization.yaml"),
        "resources: [../self-signed]\ncomponents: [../../components/generate-network-policies]\n",
    )
    .unwrap();
    for overlay in [
        "base",
        "overlays/self-signed",
        "overlays/audit",
        "overlays/generate-network-policies",
    ] {
        let dir = deploy.join(overlay);
        let dir = dir.to_str().unwrap();
        // The namespace must exist for a dry run of what lives in it.
        kubectl_ok(
            &["apply", "--server-side", "-f", "-"],
            Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"raygate-system"}}"#),
        );
        let out = kubectl(
            &["apply", "--dry-run=server", "--validate=strict", "-k", dir],
            None,
        );
        assert!(out.status.success(), "{overlay}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout)
                .contains("validatingwebhookconfiguration.admissionregistration.k8s.io/raygate"),
            "{overlay}"
        );
    }
    let cert_manager = render_deploy("deploy/overlays/cert-manager");
    let injected = cert_manager
        .iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .is_some_and(|k| k.ends_with("WebhookConfiguration"))
        })
        .all(|d| {
            d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == "raygate-system/raygate-tls"
        });
    assert!(
        injected,
        "cert-manager injects the CA into both configurations"
    );
    let rendered = render_deploy(deploy.join("overlays/self-signed").to_str().unwrap());
    let bundles: Vec<String> = rendered
        .iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .is_some_and(|k| k.ends_with("WebhookConfiguration"))
        })
        .flat_map(|d| d["webhooks"].as_array().unwrap())
        // kustomize folds long base64 over lines; the API server decodes it whole.
        .map(|w| {
            w["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<String>()
        })
        .collect();
    assert_eq!(bundles.len(), 5);
    assert!(
        bundles.iter().all(|b| *b == ca),
        "the caBundle is the generated CA"
    );

    // RBAC for real, then ask the API server what raygate's identity may do.
    apply_raygate_rbac();
    let can = |verb: &str, resource: &str| -> bool {
        let out = kubectl(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-A",
                "--as=system:serviceaccount:raygate-system:raygate",
            ],
            None,
        );
        text(&out.stdout).trim() == "yes"
    };
    assert!(can("watch", "networkpolicies.networking.k8s.io"));
    assert!(can("list", "rayclusters.ray.io"));
    assert!(!can("create", "rayclusters.ray.io"));
    assert!(!can("get", "secrets"));
    assert!(!can("delete", "pods"));
    // Its own audit Lease, in its own namespace, and no other.
    let can_in = |verb: &str, resource: &str, namespace: &str| -> bool {
        let out = kubectl(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                namespace,
                "--as=system:serviceaccount:raygate-system:raygate",
            ],
            None,
        );
        text(&out.stdout).trim() == "yes"
    };
    assert!(can_in(
        "update",
        "leases.coordination.k8s.io/raygate-audit",
        "raygate-system"
    ));
    assert!(!can_in(
        "update",
        "leases.coordination.k8s.io/kube-scheduler",
        "raygate-system"
    ));
    assert!(!can_in(
        "update",
        "leases.coordination.k8s.io/raygate-audit",
        "kube-system"
    ));
    assert!(!can_in(
        "delete",
        "leases.coordination.k8s.io/raygate-audit",
        "raygate-system"
    ));

    // The NetworkPolicy controller's component adds writing NetworkPolicies and reading the
    // API server's Endpoints, and nothing else.
    apply_network_policy_controller_rbac();
    assert!(can("create", "networkpolicies.networking.k8s.io"));
    assert!(can("patch", "networkpolicies.networking.k8s.io"));
    assert!(!can("delete", "networkpolicies.networking.k8s.io"));
    assert!(!can("update", "networkpolicies.networking.k8s.io"));
    assert!(!can("update", "rayclusters.ray.io/finalizers"));
    assert!(can_in("get", "endpoints/kubernetes", "default"));
    assert!(!can_in("get", "endpoints/other", "default"));
    assert!(!can_in("list", "endpoints", "default"));
}

/// A NetworkPolicy admitting all TCP between the pods of RayCluster `cluster`.
fn covering_policy(name: &str, cluster: &str) -> String {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": name},
    "spec": {
        "podSelector": {"matchLabels": {"ray.io/cluster": cluster}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": cluster}}}]}]
    }})
    .to_string()
}

fn ray_pods(ns: &str, cluster: &str) -> usize {
    kubectl_ok(
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("ray.io/cluster={cluster}"),
            "-o",
            "name",
        ],
        None,
    )
    .lines()
    .count()
}

fn denied_pod_creates(raygate: &Raygate) -> u64 {
    raygate
        .requests()
        .iter()
        .filter(|(kind, op, decision, _)| kind == "Pod" && op == "CREATE" && decision == "denied")
        .map(|r| r.3)
        .sum()
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_cluster_applied_before_its_network_policy_comes_up_once_the_policy_exists() {
    let raygate = Raygate::start_in_cluster("enforce", &[]);
    let _registration = Registration::new(&raygate, "order");
    let ns = namespace("order");
    wait_for_webhook(&ns);

    // The cluster first, as `kubectl apply -f dir/` may do: admitted with a warning.
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("ordered")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Warning: network-policy/missing"), "{err}");

    // Its Pods are refused while nothing covers them.
    wait_until(
        "raygate denies the operator's Pods",
        Duration::from_secs(60),
        || denied_pod_creates(&raygate) > 0,
    );
    assert_eq!(ray_pods(&ns, "ordered"), 0);

    // The policy second: the cache catches up and the operator's retries succeed.
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&covering_policy("ordered-ray", "ordered")),
    );
    wait_until(
        "the operator's Pods are admitted once the policy exists",
        Duration::from_secs(120),
        || ray_pods(&ns, "ordered") >= 2,
    );

    // Deleting the policy would leave the live cluster uncovered: kubectl shows why.
    let out = kubectl(&["delete", "networkpolicy", "-n", &ns, "ordered-ray"], None);
    assert!(
        out.status.success(),
        "warn by default: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("Warning: network-policy/uncovers-cluster"),
        "{err}"
    );
    assert!(err.contains("RayCluster \"ordered\""), "{err}");
    // ... and once the cache has seen the delete, a new Pod of the cluster is refused.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "by-hand", "labels": {"ray.io/cluster": "ordered", "ray.io/node-type": "worker"}},
        "spec": {"nodeSelector": {"node-role": "worker"}, "containers": [{
            "name": "ray-worker", "image": "rayproject/ray:2.52.0",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    wait_until("the cache sees the delete", Duration::from_secs(20), || {
        let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&pod.to_string()));
        !out.status.success() && text(&out.stderr).contains("network-policy/missing")
    });
}

/// The spec of the fillable cluster, for embedding in a RayJob or RayService.
fn fillable_spec() -> Value {
    let cluster: Value = serde_yaml_ng::from_str(&fillable_cluster("embedded")).unwrap();
    cluster["spec"].clone()
}

/// The selector raygate's `network-policy/missing` warning tells the user to write.
fn hinted_selector(warnings: &str) -> (String, String) {
    let hint = warnings
        .split("create one selecting ")
        .nth(1)
        .unwrap_or_else(|| panic!("no selector hint in {warnings}"));
    let selector = hint.split_whitespace().next().unwrap();
    let (key, value) = selector.split_once('=').unwrap();
    (key.to_owned(), value.to_owned())
}

fn ray_pods_labelled(ns: &str, selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&kubectl_ok(
        &["get", "pods", "-n", ns, "-l", selector, "-o", "json"],
        None,
    ))
    .unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_rayjob_and_a_rayservice_come_up_behind_the_network_policy_their_hint_names() {
    let raygate = Raygate::start_in_cluster("enforce", &[]);
    let _registration = Registration::new(&raygate, "origin");
    let ns = namespace("origin");
    wait_for_webhook(&ns);
    let serve_config = "http_options:\n  host: 0.0.0.0\n  port: 8001\napplications:\n- name: app\n  import_path: app:deployment\n  route_prefix: /\n";
    let objects = [
        json!({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "nightly"},
            "spec": {"entrypoint": "python -c 'import ray; ray.init()'",
                     "shutdownAfterJobFinishes": false, "rayClusterSpec": fillable_spec()}}),
        json!({"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "web"},
            "spec": {"serveConfigV2": serve_config, "rayClusterConfig": fillable_spec()}}),
    ];
    for object in objects {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&object.to_string()));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let (key, value) = hinted_selector(&text(&out.stderr));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("raygate.dev/ray-cr-name", name.as_str())
        );
        // The NetworkPolicy the hint asks for: it selects the Pods by the name the user wrote.
        let selector = json!({"matchLabels": {&key: &value}});
        let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("{name}-ray")},
            "spec": {"podSelector": selector, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": selector}]}]}});
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&policy.to_string()));
        let label = format!("{key}={value}");
        wait_until(
            &format!("the operator's Pods of {name} are admitted"),
            Duration::from_secs(120),
            || ray_pods_labelled(&ns, &label).len() >= 2,
        );
        // They carry a generated cluster name, which no policy written beforehand can know.
        for pod in ray_pods_labelled(&ns, &label) {
            let cluster = pod["metadata"]["labels"]["ray.io/cluster"]
                .as_str()
                .unwrap();
            assert_ne!(cluster, name, "{pod}");
            assert!(cluster.starts_with(&name), "{cluster}");
        }
    }
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn readiness_waits_for_the_cache_and_an_unreachable_api_server_never_locks_admission() {
    // A kubeconfig pointing at a closed port: the cache can never sync.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let raygate = Raygate::start_with(
        "enforce",
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cache-sync-timeout",
            "3s",
        ],
    );
    let (code, body) = raygate.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("NetworkPolicy cache"), "{body}");
    wait_until(
        "ready after the sync timeout",
        Duration::from_secs(10),
        || raygate.get("/readyz").0 == 200,
    );
    // Coverage is then unverified (audited), never a reason to deny.
    let _registration = Registration::new(&raygate, "unsynced");
    let ns = namespace("unsynced");
    let out = kubectl(
        &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
        Some(&fillable_cluster("unsynced")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        raygate
            .metrics()
            .contains("raygate_watch_errors_total{resource=\"networkpolicies\"}")
    );
}

#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn audit_reports_what_already_runs_and_writes_one_policy_report_per_namespace() {
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-f",
            "deploy/crds/wgpolicyk8s.io_policyreports.yaml",
        ],
        None,
    );
    apply_raygate_rbac();
    // Objects created before raygate was registered: nothing checked them.
    let ns = namespace("audit-scan");
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&default_ports_cluster()),
    );
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("fillable")),
    );
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&covering_policy("fillable-ray", "fillable")),
    );

    let audit = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_raygate"))
            .args([
                "audit",
                "--kubeconfig",
                &env("E2E_RAYGATE_KUBECONFIG"),
                "-n",
                &ns,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = audit(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("RayCluster {ns}/raycluster-kuberay: DENIED")),
        "{stdout}"
    );
    assert!(stdout.contains("ports/head-port"), "{stdout}");
    assert!(stdout.contains("network-policy/missing"), "{stdout}");
    assert!(
        stdout.contains(&format!("RayCluster {ns}/fillable: allowed once filled in")),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("raygate audit: listed"),
        "progress: {}",
        text(&out.stderr)
    );

    let json_out = audit(&["--output", "json"]);
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let kinds: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    // Both clusters, and whichever of their Pods the operator has created by now.
    assert_eq!(
        kinds.iter().filter(|k| **k == "RayCluster").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|k| *k == "RayCluster" || *k == "Pod"),
        "{kinds:?}"
    );

    // Twice: the second run updates the same report instead of adding one.
    for _ in 0..2 {
        let out = audit(&["--write-reports"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    }
    let reports: Value = serde_json::from_str(&kubectl_ok(
        &[
            "get",
            "policyreports.wgpolicyk8s.io",
            "-n",
            &ns,
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let items = reports["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{reports}");
    let report = &items[0];
    assert_eq!(report["metadata"]["name"], "raygate");
    let fails = report["summary"]["fail"].as_u64().unwrap();
    assert!(fails >= 3, "{report}");
    let results = report["results"].as_array().unwrap();
    assert!(results.iter().any(|r| {
        r["rule"] == "ports/head-port"
            && r["result"] == "fail"
            && r["resources"][0]["name"] == "raycluster-kuberay"
            && r["resources"][0]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
    }));
    assert_eq!(
        results.iter().filter(|r| r["result"] == "fail").count() as u64,
        fails
    );

    // The same scan in the background, as metrics.
    let raygate = Raygate::start_in_cluster("enforce", &["--audit-interval", "1s"]);
    wait_until(
        "the background audit exports its findings",
        Duration::from_secs(30),
        || {
            raygate.metrics().lines().any(|l| {
                l.starts_with("raygate_audit_violations{")
                    && l.contains(&format!("namespace=\"{ns}\""))
                    && l.contains("rule=\"ports/head-port\"")
            })
        },
    );
}

fn ray_pods_of(ns: &str, cluster: &str, node_type: &str) -> Vec<Value> {
    ray_pods_labelled(
        ns,
        &format!("ray.io/cluster={cluster},ray.io/node-type={node_type}"),
    )
}

fn scale_workers(ns: &str, cluster: &str, replicas: u32) -> Output {
    let patch =
        json!([{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": replicas}]);
    kubectl(
        &[
            "patch",
            "raycluster",
            cluster,
            "-n",
            ns,
            "--type=json",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
}

/// Installing raygate, or leaving audit mode, never stops a live cluster: a cluster on
/// KubeRay's defaults, created in audit mode, scales up and down under enforcement, its new
/// workers dial the port its head really listens on, and only what an update newly breaks is
/// denied. A new default-deny NetworkPolicy that would cut it is warned about.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_cluster_created_in_audit_mode_scales_under_enforcement_without_being_re_planned() {
    let ns = namespace("ratchet");
    let cluster = "raycluster-kuberay";
    {
        let audit = Raygate::start_in_cluster("audit", &[]);
        let _registration = Registration::new(&audit, "ratchet-audit");
        wait_until(
            "the API server calls raygate in audit mode",
            Duration::from_secs(20),
            || {
                let out = kubectl(
                    &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
                    Some(&default_ports_cluster()),
                );
                out.status.success() && text(&out.stderr).contains("Warning: ports/")
            },
        );
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&covering_policy("kuberay-ray", cluster)),
        );
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&default_ports_cluster()),
        );
        wait_until(
            "the audited cluster's Pods exist",
            Duration::from_secs(60),
            || ray_pods(&ns, cluster) >= 2,
        );
    }
    let stored = |ns: &str| -> Value {
        serde_json::from_str(&kubectl_ok(
            &["get", "raycluster", cluster, "-n", ns, "-o", "json"],
            None,
        ))
        .unwrap()
    };
    let before = stored(&ns);
    assert!(
        before["metadata"]["annotations"]["raygate.dev/enforced"].is_null(),
        "audit mode marks nothing: {before}"
    );

    let raygate = Raygate::start_in_cluster("enforce", &[]);
    let _registration = Registration::new(&raygate, "ratchet");
    // The live cluster's own name would be an unchanged UPDATE, which raygate lets through.
    wait_until(
        "the API server calls raygate",
        Duration::from_secs(20),
        || {
            let probe = default_ports_cluster().replace("name: raycluster-kuberay", "name: probe");
            let out = kubectl(
                &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
                Some(&probe),
            );
            text(&out.stderr).contains("raygate")
        },
    );

    // The autoscaler's way: replicas only. Admitted, and nothing re-planned.
    let out = scale_workers(&ns, cluster, 3);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(
        "the operator adds two workers",
        Duration::from_secs(90),
        || ray_pods_of(&ns, cluster, "worker").len() >= 3,
    );
    let after = stored(&ns);
    assert_eq!(
        after["spec"]["headGroupSpec"]["rayStartParams"],
        before["spec"]["headGroupSpec"]["rayStartParams"],
        "a live head is never re-planned"
    );
    assert_eq!(
        after["spec"]["headGroupSpec"]["template"],
        before["spec"]["headGroupSpec"]["template"]
    );
    for worker in ray_pods_of(&ns, cluster, "worker") {
        let command = worker["spec"]["containers"][0].to_string();
        assert!(
            command.contains(":6379") && !command.contains(":6380"),
            "new workers dial the head's real GCS port: {command}"
        );
    }
    // Their Pods were judged, warned about, and admitted.
    assert!(
        raygate
            .requests()
            .iter()
            .any(|(kind, op, decision, _)| kind == "Pod"
                && op == "CREATE"
                && decision == "allowed"),
        "{:?}",
        raygate.requests()
    );
    let out = scale_workers(&ns, cluster, 1);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An unrelated edit passes with the old findings as warnings ...
    let label = json!({"metadata": {"labels": {"team": "ml"}}});
    let out = kubectl(
        &[
            "patch",
            "raycluster",
            cluster,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &label.to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ... and a new break is denied, naming only what the update broke.
    let pin = json!([{"op": "add", "path": "/spec/workerGroupSpecs/0/template/spec/nodeName", "value": "gpu-node"}]);
    let out = kubectl(
        &[
            "patch",
            "raycluster",
            cluster,
            "-n",
            &ns,
            "--type=json",
            "-p",
            &pin.to_string(),
        ],
        None,
    );
    assert!(!out.status.success(), "a new break is denied");
    let err = text(&out.stderr);
    let denial = err
        .split_once("Error from server")
        .map_or("", |(_, denial)| denial);
    assert!(denial.contains("placement/node-name"), "{err}");
    assert!(
        !denial.contains("ports/head-port"),
        "old findings are warnings, not reasons: {err}"
    );
    assert!(err.contains("Warning: ports/head-port"), "{err}");

    // A default-deny policy created beside it cuts the live cluster's egress: warned.
    let deny_all = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}});
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&deny_all.to_string()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("Warning: network-policy/uncovers-cluster"),
        "{err}"
    );
    assert!(err.contains("creating NetworkPolicy \"deny-all\""), "{err}");
}

/// An exemption of a RayJob covers the RayCluster KubeRay generates for it (a generated
/// name) and that cluster's Pods, so the exempt job runs.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn an_exempt_rayjob_runs_its_generated_cluster() {
    let ns = namespace("exempt");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        raygate::policy::BUILT_IN_POLICY.replace(
            "exemptions: []",
            &format!("exemptions: [{{namespace: {ns}, kind: RayJob, name: rayjob-sample}}]"),
        ),
    )
    .unwrap();
    let raygate = Raygate::start_in_cluster("enforce", &["--policy", policy.to_str().unwrap()]);
    let _registration = Registration::new(&raygate, "exempt");
    wait_for_webhook(&ns);
    // KubeRay's sample RayJob, on default ports and with no NetworkPolicy.
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fixture("kuberay/samples/ray-job.sample.yaml")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(
        "the exempt job's generated cluster has its Pods",
        Duration::from_secs(120),
        || ray_pods_labelled(&ns, "ray.io/node-type=head").len() == 1,
    );
    let clusters: Value = serde_json::from_str(&kubectl_ok(
        &["get", "rayclusters", "-n", &ns, "-o", "json"],
        None,
    ))
    .unwrap();
    let name = clusters["items"][0]["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("rayjob-sample-"), "{name}");
}

/// A NetworkPolicy that admits the cluster's own namespace by a label of it (`team: ml`):
/// raygate matches the namespace's real labels, so the operator's Pods are admitted.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn a_namespace_label_selector_is_honoured() {
    let ns = namespace("nslabel");
    kubectl_ok(&["label", "namespace", &ns, "team=ml"], None);
    let raygate = Raygate::start_in_cluster("enforce", &[]);
    let _registration = Registration::new(&raygate, "nslabel");
    wait_for_webhook(&ns);
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "by-team"},
        "spec": {"podSelector": {"matchLabels": {"ray.io/cluster": "labelled"}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]}]}});
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&policy.to_string()));
    let out = kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&fillable_cluster("labelled")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains("network-policy/"), "{err}");
    wait_until(
        "the operator's Pods are admitted",
        Duration::from_secs(90),
        || ray_pods(&ns, "labelled") >= 2,
    );
    assert_eq!(denied_pod_creates(&raygate), 0);
}

/// Two replicas with `--audit-interval`: one holds the audit Lease and alone writes reports
/// and exports audit gauges; stopping it hands the Lease to the other within its duration.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn two_replicas_elect_one_audit_leader_and_the_other_takes_over() {
    let ns = namespace("leader");
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&default_ports_cluster()),
    );
    let args = ["--audit-interval", "1s", "--write-reports"];
    let mut replicas = vec![
        Raygate::start_in_cluster("enforce", &args),
        Raygate::start_in_cluster("enforce", &args),
    ];
    let exports = |r: &Raygate| r.metrics().contains("raygate_audit_violations{");
    let holder = || -> String {
        kubectl_ok(
            &[
                "get",
                "lease",
                "raygate-audit",
                "-n",
                "raygate-system",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        )
    };
    wait_until(
        "one replica leads the audit",
        Duration::from_secs(30),
        || replicas.iter().any(exports),
    );
    // Give the follower a few audit intervals: it never exports, and one report is written.
    std::thread::sleep(Duration::from_secs(3));
    let leading: Vec<usize> = (0..2).filter(|&i| exports(&replicas[i])).collect();
    assert_eq!(leading.len(), 1, "only the leader exports audit gauges");
    let mut leader = replicas.remove(leading[0]);
    let follower = replicas.remove(0);
    let reports = kubectl_ok(&["get", "policyreports", "-n", &ns, "-o", "name"], None);
    assert_eq!(reports.lines().count(), 1, "{reports}");
    let led_by = holder();
    assert!(
        led_by.ends_with(&format!("_{}", leader.child.id())),
        "{led_by}"
    );

    // SIGTERM: the leader releases the Lease on its way out and the follower takes over.
    let started = std::time::Instant::now();
    leader.terminate();
    wait_until("the follower takes over", Duration::from_secs(20), || {
        exports(&follower)
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "within the lease duration: {took:?}"
    );
    assert!(holder().ends_with(&format!("_{}", follower.child.id())));

    // The namespace loses its Ray objects: its report goes too.
    kubectl_ok(
        &["delete", "raycluster", "--all", "-n", &ns, "--wait=false"],
        None,
    );
    kubectl_ok(
        &["delete", "pods", "--all", "-n", &ns, "--wait=false"],
        None,
    );
    wait_until(
        "the stale PolicyReport is deleted",
        Duration::from_secs(30),
        || {
            kubectl_ok(&["get", "policyreports", "-n", &ns, "-o", "name"], None)
                .trim()
                .is_empty()
        },
    );
}

/// The command KubeRay v1.5.0 really gives each Ray container (read back from the Pods it
/// creates) is the one `raygate ray-start` predicts: the operator's own Go code is the oracle
/// for how rayStartParams reach `bash -c`. The namespace is in audit mode, so the operator
/// also builds Pods from values raygate would deny (a value with a space, a comment).
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn the_operators_commands_are_the_ones_raygate_reads() {
    let (_raygate, _registration, ns) = setup("commands", "audit");
    let mut clusters = vec![
        ("sample", default_ports_cluster()),
        (
            "overwrite",
            fixture("kuberay/samples/ray-cluster.overwrite-command.yaml"),
        ),
        (
            "head-command",
            fixture("kuberay/samples/ray-cluster.head-command.yaml"),
        ),
    ];
    let mut hostile: Value = serde_yaml_ng::from_str(&fillable_cluster("hostile")).unwrap();
    hostile["spec"]["headGroupSpec"]["rayStartParams"]["temp-dir"] = json!("/tmp/ray --port=6379");
    hostile["spec"]["headGroupSpec"]["rayStartParams"]["resources"] = json!("'{\"Custom\": 1}'");
    hostile["spec"]["workerGroupSpecs"][0]["rayStartParams"]["node-name"] = json!("w #--port=1");
    // Template labels override KubeRay's own but for node-type, group and cluster.
    hostile["spec"]["workerGroupSpecs"][0]["template"]["metadata"] = json!({"labels": {
        "ray.io/is-ray-node": "no", "ray.io/node-type": "head", "app.kubernetes.io/name": "mine", "team": "ml"}});
    // A group's own labels override its template's.
    hostile["spec"]["workerGroupSpecs"][0]["labels"] = json!({"team": "group", "tier": "batch"});
    clusters.push(("hostile", serde_json::to_string(&hostile).unwrap()));
    let mut compared = 0;
    for (what, manifest) in &clusters {
        let applied: Value = serde_json::from_str(&kubectl_ok(
            &["apply", "-n", &ns, "-o", "json", "-f", "-"],
            Some(manifest),
        ))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        // A manifest of several documents comes back as a List.
        let applied = match applied["items"].as_array() {
            Some(items) => items
                .iter()
                .find(|i| i["kind"] == "RayCluster")
                .cloned()
                .unwrap(),
            None => applied,
        };
        let name = applied["metadata"]["name"].as_str().unwrap().to_owned();
        let groups = 1 + applied["spec"]["workerGroupSpecs"]
            .as_array()
            .map_or(0, |w| {
                w.iter()
                    .filter(|g| g["replicas"].as_u64() != Some(0))
                    .count()
            });
        wait_until(
            &format!("the operator creates the Pods of {what}"),
            Duration::from_secs(90),
            || ray_pods_labelled(&ns, &format!("ray.io/cluster={name}")).len() >= groups,
        );
        let stored: Value = serde_json::from_str(&kubectl_ok(
            &["get", "raycluster", "-n", &ns, &name, "-o", "json"],
            None,
        ))
        .unwrap();
        let spec = &stored["spec"];
        for pod in ray_pods_labelled(&ns, &format!("ray.io/cluster={name}")) {
            let labels = &pod["metadata"]["labels"];
            let (role, group) = if labels["ray.io/node-type"] == "head" {
                ("head", spec["headGroupSpec"].clone())
            } else {
                let group_name = labels["ray.io/group"].as_str().unwrap();
                let group = spec["workerGroupSpecs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|g| g["groupName"] == group_name)
                    .unwrap()
                    .clone();
                ("worker", group)
            };
            let case = json!({
                "id": format!("{what}/{role}"),
                "role": role,
                "group": group,
                "head": spec["headGroupSpec"],
                "annotations": stored["metadata"]["annotations"],
                "cluster": name,
                "namespace": ns,
                "autoscaling": spec["enableInTreeAutoscaling"] == true,
            });
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_raygate"))
                .arg("ray-start")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            writeln!(child.stdin.take().unwrap(), "{case}").unwrap();
            let out = child.wait_with_output().unwrap();
            let predicted: Value = serde_json::from_slice(&out.stdout).unwrap();
            let container = &pod["spec"]["containers"][0];
            let argv: Vec<Value> = container["command"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(container["args"].as_array().into_iter().flatten())
                .cloned()
                .collect();
            assert_eq!(
                Value::Array(argv),
                predicted["argv"],
                "{what}/{role}: the operator's command differs from raygate's reading"
            );
            let generated = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "KUBERAY_GEN_RAY_START_CMD")
                .map(|e| e["value"].clone());
            assert_eq!(
                generated.as_ref(),
                Some(&predicted["env"]["KUBERAY_GEN_RAY_START_CMD"]),
                "{what}/{role}: KUBERAY_GEN_RAY_START_CMD differs"
            );
            // The labels KubeRay really sets are the ones raygate's NetworkPolicy judgement
            // predicts (template labels such as ray.io/is-ray-node: "no" included).
            let mut labels = pod["metadata"]["labels"].clone();
            if let Some(map) = labels.as_object_mut() {
                // The controller's own bookkeeping label, not a template one.
                map.remove("pod-template-hash");
            }
            assert_eq!(
                labels, predicted["labels"],
                "{what}/{role}: the operator's Pod labels differ from raygate's prediction"
            );
            compared += 1;
        }
    }
    // Every head, and the worker groups with replicas (head-command has none).
    assert!(compared >= 7, "compared {compared} Pods");
}

/// deploy/components/generate-network-policies' RBAC, on top of deploy/base's.
fn apply_network_policy_controller_rbac() {
    apply_raygate_rbac();
    kubectl_ok(
        &[
            "apply",
            "-f",
            "deploy/components/generate-network-policies/rbac.yaml",
        ],
        None,
    );
}

/// raygate with the NetworkPolicy controller and a short resync, its webhooks registered,
/// and a namespace of the test's own, the only one the controller's namespace selector
/// matches: Ray objects other tests leave behind are none of its business.
fn start_controller(test: &str) -> (Raygate, Registration, String) {
    apply_network_policy_controller_rbac();
    let ns = namespace(test);
    // Named after the namespace: a namespace of an earlier run on the same control plane
    // never matches.
    let selector = format!("raygate-e2e/netpol={ns}");
    kubectl_ok(&["label", "namespace", &ns, &selector], None);
    let raygate = Raygate::start_in_cluster(
        "enforce",
        &[
            "--generate-network-policies",
            "--generate-network-policies-resync",
            "2s",
            "--generate-network-policies-namespaces",
            &selector,
        ],
    );
    let registration = Registration::new(&raygate, test);
    wait_for_webhook(&ns);
    (raygate, registration, ns)
}

/// The value of one sample of raygate's metrics (`name{labels}` as exported), 0 if absent.
fn metric(raygate: &Raygate, sample: &str) -> u64 {
    raygate
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap_or(0))
}

fn controller_passes(raygate: &Raygate) -> u64 {
    metric(raygate, "raygate_network_policy_controller_passes_total")
}

fn generated(raygate: &Raygate, result: &str) -> u64 {
    metric(
        raygate,
        &format!("raygate_generated_network_policies_total{{result=\"{result}\"}}"),
    )
}

/// Waits until the controller has made `passes` more passes than now (it leads once the
/// Lease of an earlier test's raygate has expired).
fn wait_for_passes(raygate: &Raygate, passes: u64) {
    let from = controller_passes(raygate);
    wait_until(
        &format!("{passes} more passes of the NetworkPolicy controller"),
        Duration::from_secs(60),
        || controller_passes(raygate) >= from + passes,
    );
}

fn network_policy(ns: &str, name: &str) -> Option<Value> {
    let out = kubectl(
        &[
            "get",
            "networkpolicy",
            "-n",
            ns,
            name,
            "-o",
            "json",
            "--show-managed-fields",
        ],
        None,
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn head_pods(ns: &str, selector: &str) -> usize {
    ray_pods_labelled(ns, &format!("{selector},ray.io/node-type=head")).len()
}

/// A RayCluster, a RayJob and a RayService without a NetworkPolicy each get the one `raygate
/// fix` would write, owned by them and labelled as raygate's; the operator's Pods are then
/// admitted under `enforceOn: pods`. Deleting each object deletes its policy (the garbage
/// collector follows the owner reference).
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn the_controller_writes_each_missing_network_policy_and_the_pods_come_up() {
    let (mut raygate, _registration, ns) = start_controller("netpol-gen");
    // Lead before the clock starts: the delay measured is the controller's and the operator's.
    wait_for_passes(&raygate, 1);
    let serve_config = "http_options:\n  host: 0.0.0.0\n  port: 8001\napplications:\n- name: app\n  import_path: app:deployment\n  route_prefix: /\n";
    let mut autoscaled: Value = serde_yaml_ng::from_str(&fillable_cluster("gen-cluster")).unwrap();
    autoscaled["spec"]["enableInTreeAutoscaling"] = json!(true);
    // Ray before 2.60.0 cannot be told the GCS port the plan moves (ports/autoscaler-gcs-port).
    autoscaled["spec"]["autoscalerOptions"] = json!({"image": "rayproject/ray:2.60.0"});
    let objects = [
        (autoscaled, "ray.io/cluster=gen-cluster"),
        (
            json!({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "gen-job"},
                "spec": {"entrypoint": "python -c 'import ray; ray.init()'",
                         "shutdownAfterJobFinishes": false, "rayClusterSpec": fillable_spec()}}),
            "raygate.dev/ray-cr-name=gen-job",
        ),
        (
            json!({"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "gen-service"},
                "spec": {"serveConfigV2": serve_config, "rayClusterConfig": fillable_spec()}}),
            "raygate.dev/ray-cr-name=gen-service",
        ),
    ];
    let mut started = Vec::new();
    for (object, selector) in &objects {
        let out = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&object.to_string()));
        assert!(out.status.success(), "{}", text(&out.stderr));
        started.push((object, *selector, Instant::now()));
    }
    for (object, selector, at) in &started {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        wait_until(
            &format!("the head Pod of {kind} {name}"),
            Duration::from_secs(180),
            || head_pods(&ns, selector) >= 1,
        );
        println!(
            "{kind} {name}: head Pod created {:.1} s after the {kind}",
            at.elapsed().as_secs_f64()
        );
        let policy_name = format!("raygate-{}-{name}", kind.to_lowercase());
        let policy = network_policy(&ns, &policy_name)
            .unwrap_or_else(|| panic!("no NetworkPolicy {policy_name}"));
        let uid = kubectl_ok(
            &[
                "get",
                kind,
                "-n",
                &ns,
                name,
                "-o",
                "jsonpath={.metadata.uid}",
            ],
            None,
        );
        assert_eq!(
            policy["metadata"]["ownerReferences"],
            json!([{"apiVersion": "ray.io/v1", "kind": kind, "name": name, "uid": uid}]),
            "owned by the {kind}, not as its controller and without blocking its deletion"
        );
        assert_eq!(
            policy["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "raygate"})
        );
        let managers: Vec<&str> = policy["metadata"]["managedFields"]
            .as_array()
            .unwrap_or_else(|| panic!("no managedFields: {policy}"))
            .iter()
            .map(|m| m["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["raygate-network-policies"]);
        let (key, value) = selector.split_once('=').unwrap();
        assert_eq!(
            policy["spec"]["podSelector"],
            json!({"matchLabels": {key: value}})
        );
    }
    // The autoscaled cluster's autoscaler reaches the API server. This loopback API server
    // cannot publish its `kubernetes` Endpoints (a loopback address is invalid there), so the
    // controller looked them up, found none, and wrote the rule the generator documents for
    // an unknown address.
    let policy = network_policy(&ns, "raygate-raycluster-gen-cluster").unwrap();
    let egress = policy["spec"]["egress"].to_string();
    assert!(
        egress.contains(r#"{"ipBlock":{"cidr":"0.0.0.0/0"}}"#),
        "{egress}"
    );
    assert!(
        raygate
            .logs
            .lock()
            .unwrap()
            .contains("cannot read the kubernetes Endpoints"),
        "the Endpoints were looked up"
    );
    // The controller usually writes the policy before KubeRay makes the first Pod; a Pod it
    // was too late for is denied and comes with the operator's retry (see the selector test).
    println!(
        "Pod creates raygate denied before the policies existed: {}",
        denied_pod_creates(&raygate)
    );

    // Resyncs leave the policies alone: what is stored is what is wanted.
    let versions = |ns: &str| {
        kubectl_ok(
            &[
                "get",
                "networkpolicies",
                "-n",
                ns,
                "-o",
                "jsonpath={.items[*].metadata.resourceVersion}",
            ],
            None,
        )
    };
    let before = versions(&ns);
    wait_for_passes(&raygate, 3);
    assert_eq!(versions(&ns), before);
    assert_eq!(generated(&raygate, "created"), 3);
    assert_eq!(generated(&raygate, "updated"), 0);
    assert_eq!(generated(&raygate, "failed"), 0);

    // The garbage collector deletes each policy with its object.
    for (object, _, _) in &started {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        kubectl_ok(&["delete", kind, "-n", &ns, name, "--wait=false"], None);
        let policy_name = format!("raygate-{}-{name}", kind.to_lowercase());
        wait_until(
            &format!("NetworkPolicy {policy_name} is deleted with its {kind}"),
            Duration::from_secs(60),
            || network_policy(&ns, &policy_name).is_none(),
        );
    }
    // Release the Lease for the next test's raygate.
    raygate.terminate();
}

/// A NetworkPolicy raygate did not create keeps its spec even when it has the name raygate
/// would give the cluster's; a cluster a hand-written policy covers gets none.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn the_controller_never_touches_a_policy_it_did_not_create_nor_covers_a_covered_cluster() {
    let (mut raygate, _registration, ns) = start_controller("netpol-foreign");
    // Named as raygate would name the policy of RayCluster `taken`, selecting nothing of it.
    let foreign = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "raygate-raycluster-taken"},
        "spec": {"podSelector": {"matchLabels": {"app": "something-else"}},
                 "policyTypes": ["Ingress"]}});
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&foreign.to_string()));
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&covering_policy("covered-ray", "covered")),
    );
    let before = network_policy(&ns, "raygate-raycluster-taken").unwrap();
    for name in ["taken", "covered"] {
        kubectl_ok(
            &["apply", "-n", &ns, "-f", "-"],
            Some(&fillable_cluster(name)),
        );
    }
    wait_until(
        "the controller reports the name as taken",
        Duration::from_secs(60),
        || generated(&raygate, "foreign") >= 1,
    );
    wait_for_passes(&raygate, 3);
    let after = network_policy(&ns, "raygate-raycluster-taken").unwrap();
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert!(after["metadata"]["labels"].is_null(), "{after}");
    assert_eq!(
        generated(&raygate, "foreign"),
        1,
        "warned once, not on every pass"
    );
    assert!(
        raygate
            .logs
            .lock()
            .unwrap()
            .contains("a NetworkPolicy raygate did not create has the name raygate would give"),
        "the foreign policy is logged"
    );
    // The covered cluster comes up behind its own policy, and gets no generated one.
    wait_until(
        "the covered cluster's head Pod",
        Duration::from_secs(120),
        || head_pods(&ns, "ray.io/cluster=covered") >= 1,
    );
    assert!(network_policy(&ns, "raygate-raycluster-covered").is_none());
    let names = kubectl_ok(&["get", "networkpolicies", "-n", &ns, "-o", "name"], None);
    assert_eq!(
        names.lines().count(),
        2,
        "only the two written by hand: {names}"
    );
    assert_eq!(generated(&raygate, "created"), 0);
    raygate.terminate();
}

/// With a namespace selector, only the namespaces it matches get policies.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn the_controller_keeps_to_the_namespaces_its_selector_matches() {
    let (mut raygate, _registration, selected) = start_controller("netpol-selected");
    let other = namespace("netpol-other");
    for ns in [&selected, &other] {
        kubectl_ok(
            &["apply", "-n", ns, "-f", "-"],
            Some(&fillable_cluster("picked")),
        );
    }
    wait_until(
        "the selected namespace's cluster gets its policy",
        Duration::from_secs(60),
        || network_policy(&selected, "raygate-raycluster-picked").is_some(),
    );
    wait_for_passes(&raygate, 2);
    assert!(network_policy(&other, "raygate-raycluster-picked").is_none());
    // Uncovered, its Pods are denied under `enforceOn: pods`.
    wait_until(
        "raygate denies the operator's Pods in the other namespace",
        Duration::from_secs(60),
        || denied_pod_creates(&raygate) > 0,
    );
    assert_eq!(head_pods(&other, "ray.io/cluster=picked"), 0);
    // A namespace that gains the labels is one of its own from then on: its cluster gets a
    // policy, and the operator's next retry creates the Pods.
    let labelled = Instant::now();
    kubectl_ok(
        &[
            "label",
            "namespace",
            &other,
            &format!("raygate-e2e/netpol={selected}"),
        ],
        None,
    );
    wait_until(
        "the newly selected namespace's cluster gets its policy",
        Duration::from_secs(30),
        || network_policy(&other, "raygate-raycluster-picked").is_some(),
    );
    let written = labelled.elapsed();
    wait_until(
        "the operator's retry creates the head Pod",
        Duration::from_secs(300),
        || head_pods(&other, "ray.io/cluster=picked") >= 1,
    );
    println!(
        "denied RayCluster: policy written {:.1} s and head Pod created {:.1} s after its namespace was selected",
        written.as_secs_f64(),
        labelled.elapsed().as_secs_f64()
    );
    raygate.terminate();
}

/// `raygate fix --kubeconfig`: a Ray cluster a NetworkPolicy of the live cluster already
/// selects gets no new policy; one no policy selects gets its own.
#[test]
#[ignore = "needs the e2e control plane: run tests/e2e/run.sh"]
fn fix_with_a_kubeconfig_counts_the_clusters_network_policies() {
    let ns = namespace("fix-live");
    let mut covered = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"});
    let policy: Value = serde_json::from_str(&covering_policy("covers-c1", "c1")).unwrap();
    covered["metadata"] = json!({"name": "covers-c1", "namespace": ns});
    covered["spec"] = policy["spec"].clone();
    kubectl_ok(&["apply", "-f", "-"], Some(&covered.to_string()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clusters.yaml");
    let with_ns = |name: &str| {
        fillable_cluster(name).replace(
            &format!("  name: {name}\n"),
            &format!("  name: {name}\n  namespace: {ns}\n"),
        )
    };
    std::fs::write(&path, format!("{}---\n{}", with_ns("c1"), with_ns("c2"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["fix", "-f", path.to_str().unwrap(), "--kubeconfig"])
        .arg(env("E2E_RAYGATE_KUBECONFIG"))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NetworkPolicies in the cluster count as existing"),
        "{stderr}"
    );
    assert!(stderr.contains("1 NetworkPolicy(ies) added"), "{stderr}");
    assert!(stdout.contains("name: raygate-raycluster-c2"), "{stdout}");
    assert!(!stdout.contains("raygate-raycluster-c1"), "{stdout}");
    // Offline, neither is covered.
    let offline = Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["fix", "-f", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(text(&offline.stderr).contains("2 NetworkPolicy(ies) added"));
}
