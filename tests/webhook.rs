//! The real server on 127.0.0.1 with generated certificates, spoken to over verified HTTPS.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use raygate::policy::{Mode, Policy};
use raygate::server::{ClusterAccess, Running, ServeConfig};
use raygate::{Engine, tls};
use serde_json::{Value, json};
use support::*;

struct Harness {
    running: Running,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Certificates laid out like a Kubernetes Secret volume: files are symlinks through `..data`.
fn secret_volume(dir: &Path, generation: &str) -> tls::GeneratedCerts {
    let certs = tls::generate(&["localhost".into(), "127.0.0.1".into()], 2).unwrap();
    install_generation(dir, generation, &certs);
    certs
}

/// Swaps `certs` in the way the kubelet updates a Secret volume.
fn install_generation(dir: &Path, generation: &str, certs: &tls::GeneratedCerts) {
    let version = dir.join(format!("..{generation}"));
    tls::write(&version, certs).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in [tls::CERT_FILE, tls::KEY_FILE, tls::CA_FILE] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

fn client_trusting(cas: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    for ca in cas {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// The server on loopback ports with the certificate in `dir`, no client CA and no cluster.
fn serve_config(dir: &Path, engine: Engine) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert: dir.join(tls::CERT_FILE),
        tls_key: dir.join(tls::KEY_FILE),
        client_ca: None,
        engine,
        policy_file: None,
        cluster: None,
        limits: Default::default(),
    }
}

async fn start(mode: Mode) -> Harness {
    start_with(Engine::new(Policy::built_in().with_mode(mode)), None).await
}

async fn start_with(engine: Engine, cluster: Option<ClusterAccess>) -> Harness {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let certs = secret_volume(&dir, "first");
    let running = raygate::server::start(ServeConfig {
        cluster,
        ..serve_config(&dir, engine)
    })
    .await
    .unwrap();
    Harness {
        running,
        client: client_trusting(&[&certs.ca_pem]),
        _dir: tmp,
        dir,
    }
}

fn review(object: &Value, operation: &str, dry_run: bool) -> Value {
    let kind = object["kind"].as_str().unwrap_or("");
    let (group, version) = match object["apiVersion"].as_str().unwrap_or("").rsplit_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("").to_owned(),
        ),
    };
    let (new, old) = match operation {
        "DELETE" => (Value::Null, object.clone()),
        _ => (object.clone(), Value::Null),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:masters"]},
            "object": new,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.running.addr.port())
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        response.json().await.unwrap()
    }

    /// A patched CREATE passes validation, and mutating it again (the webhook is reinvoked
    /// after other mutations) patches nothing.
    async fn assert_settled(&self, patched: &Value) {
        let validated = self
            .post("/validate", &review(patched, "CREATE", false))
            .await;
        assert_eq!(response(&validated)["allowed"], true, "{validated}");
        let again = self
            .post("/mutate", &review(patched, "CREATE", false))
            .await;
        assert!(response(&again).get("patch").is_none(), "{again}");
    }

    async fn metrics(&self) -> String {
        let addr = self.running.metrics_addr.unwrap();
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn response(review: &Value) -> &Value {
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(
        review["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    &review["response"]
}

fn sample_on_default_ports() -> Value {
    let mut object = cluster("ray");
    set(
        &mut object,
        &format!("{HEAD_RAY}/ports/0/containerPort"),
        json!(6379),
    );
    object
}

#[tokio::test]
async fn a_cluster_on_default_ports_is_denied_with_its_fixes() {
    let h = start(Mode::Enforce).await;
    let answer = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "CREATE", false),
        )
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("ports/head-port at /spec/headGroupSpec/template/spec/containers/0/ports/0/containerPort"), "{message}");
    assert!(message.contains("set containerPort: 6380"), "{message}");
    assert!(
        message.contains("1 violation(s)"),
        "one finding per field: {message}"
    );
    // Without cluster access the NetworkPolicy rule is audited, never a reason to deny.
    assert!(!message.contains("network-policy"), "{message}");
    assert!(
        r["auditAnnotations"]["violations"]
            .as_str()
            .unwrap()
            .contains("network-policy/not-verified")
    );

    // A dry run (Argo CD's server-side diff) gets the same answer.
    let dry = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "CREATE", true),
        )
        .await;
    assert_eq!(dry, answer);
}

#[tokio::test]
async fn warnings_are_short_and_do_not_deny() {
    let h = start(Mode::Enforce).await;
    let mut object = cluster("ray");
    set(
        &mut object,
        &format!("{HEAD_RAY}/ports/3/name"),
        json!("ray-serve"),
    );
    let answer = h.post("/validate", &review(&object, "UPDATE", false)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.starts_with("ports/serve-port-name: "), "{warning}");
    assert!(warning.len() < 120, "{warning}");
}

#[tokio::test]
async fn mutation_fills_in_and_the_result_validates() {
    let h = start(Mode::Enforce).await;
    let text = std::fs::read_to_string("tests/fixtures/manifests/fillable-cluster.yaml").unwrap();
    let object: Value = serde_yaml_ng::from_str(text.split("---\n").next().unwrap()).unwrap();
    let denied = h.post("/validate", &review(&object, "CREATE", false)).await;
    assert_eq!(
        response(&denied)["allowed"],
        false,
        "validation alone sees the gaps"
    );

    let answer = h.post("/mutate", &review(&object, "CREATE", false)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch = patch_of(r);
    let patched = apply(&object, &patch);
    assert_eq!(
        patched
            .pointer(&format!("{WORKER_POD}/nodeSelector"))
            .unwrap(),
        &json!({"node-role": "worker"})
    );
    h.assert_settled(&patched).await;
}

#[tokio::test]
async fn audit_mode_never_denies_or_patches_but_reports() {
    let h = start(Mode::Audit).await;
    let answer = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "CREATE", false),
        )
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("ports/head-port"))
    );
    assert_eq!(r["auditAnnotations"]["mode"], "audit");
    assert!(
        r["auditAnnotations"]["violations"]
            .as_str()
            .unwrap()
            .contains("ports/head-port")
    );
    let mutated = h
        .post(
            "/mutate",
            &review(&sample_on_default_ports(), "CREATE", false),
        )
        .await;
    assert!(response(&mutated).get("patch").is_none());
    let metrics = h.metrics().await;
    assert!(
        metrics
            .contains(r#"raygate_policy_violations_total{rule="ports/head-port",action="deny",dry_run="false"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn delete_and_out_of_scope_objects_are_allowed() {
    let h = start(Mode::Enforce).await;
    let delete = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "DELETE", false),
        )
        .await;
    assert_eq!(response(&delete)["allowed"], true);

    // A real Pod CREATE as an API server sent it (kube-rs fixture): not a Ray pod.
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            "tests/fixtures/admission/kube-rs/webhook_body.v1.pod-create.json",
        )
        .unwrap(),
    )
    .unwrap();
    let answer = h
        .client
        .post(h.url("/validate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["response"]["uid"], body["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("warnings").is_none());

    // The API's round-trip fixture sets every field of the request.
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            "tests/fixtures/admission/kubernetes-api/admission.k8s.io.v1.AdmissionReview.json",
        )
        .unwrap(),
    )
    .unwrap();
    // Its placeholder operation is no operation at all: a clear 400 names it.
    let refused = h
        .client
        .post(h.url("/mutate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("operationValue"));
    let mut body = body;
    body["request"]["operation"] = json!("CREATE");
    // A real API server never sends a response; this fixture's holds placeholders.
    body.as_object_mut().unwrap().remove("response");
    let answer: Value = h
        .client
        .post(h.url("/mutate"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["uid"], "uidValue");
    assert_eq!(answer["response"]["allowed"], true);
}

#[tokio::test]
async fn a_ray_pod_bound_to_the_master_is_denied() {
    let h = start(Mode::Enforce).await;
    let mut pod = ray_pod("ray", false);
    pod["spec"]["nodeName"] = json!("gpu-node");
    let answer = h.post("/validate", &review(&pod, "CREATE", false)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("placement/node-name")
    );
}

/// The head Pod KubeRay v1.5.0 creates for an autoscaling cluster: its autoscaler looks for GCS
/// at 6379 unless told, so the Pod webhook's patch tells it the head's 6380, and the patched
/// Pod validates.
#[tokio::test]
async fn the_pod_webhook_tells_the_autoscaler_the_gcs_port() {
    let h = start(Mode::Enforce).await;
    let pod = autoscaling_head_pod("ray", 6380, "rayproject/ray:2.60.0");
    let denied = h.post("/validate", &review(&pod, "CREATE", false)).await;
    let message = response(&denied)["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("ports/autoscaler-gcs-port at /spec/containers/1/args/0"),
        "{message}"
    );

    let answer = h.post("/mutate", &review(&pod, "CREATE", false)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patched = apply(&pod, &patch_of(r));
    let mut expected = pod.clone();
    expected["spec"]["containers"][1]["args"] = json!([
        "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE) --gcs-address=127.0.0.1:6380"
    ]);
    assert_eq!(patched, expected, "only the autoscaler's args change");
    h.assert_settled(&patched).await;

    // An autoscaler of Ray 2.52.0 cannot be told: no patch, and the Pod is denied.
    let old = autoscaling_head_pod("ray", 6380, "rayproject/ray:2.52.0");
    let answer = h.post("/mutate", &review(&old, "CREATE", false)).await;
    assert!(response(&answer).get("patch").is_none(), "{answer}");
    let denied = h.post("/validate", &review(&old, "CREATE", false)).await;
    assert_eq!(response(&denied)["allowed"], false);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_the_server_stays_healthy() {
    let h = start(Mode::Enforce).await;
    for body in ["not json", "{\"kind\":\"AdmissionReview\"}", "[1,2,3]"] {
        let response = h
            .client
            .post(h.url("/validate"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string());
    }
    let huge = vec![b' '; raygate::server::MAX_BODY_BYTES + 1];
    let response = h
        .client
        .post(h.url("/validate"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let ok = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let answer = h
        .post("/validate", &review(&cluster("ray"), "CREATE", false))
        .await;
    assert!(response_allowed(&answer));
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("raygate_bad_requests_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"raygate_admission_requests_total{kind="RayCluster",operation="CREATE",decision="allowed",dry_run="false"} 1"#), "{metrics}");
    assert!(
        metrics.contains("raygate_admission_duration_seconds_bucket{le=\"0.000025\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("raygate_tls_cert_expiry_timestamp_seconds"),
        "{metrics}"
    );
}

/// The JSON Patch of a mutating answer's `response` (base64, as the API server reads it).
fn patch_of(response: &Value) -> json_patch::Patch {
    let encoded = response["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    serde_json::from_slice(&bytes).expect("the patch is a JSON Patch")
}

fn response_allowed(review: &Value) -> bool {
    review["response"]["allowed"].as_bool().unwrap()
}

#[tokio::test]
async fn plaintext_is_refused_on_the_webhook_port() {
    let h = start(Mode::Enforce).await;
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/healthz",
            h.running.addr.port()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let ok = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_secret_volume_swap_rotates_the_certificate_without_restart() {
    let h = start(Mode::Enforce).await;
    let peer = |client: reqwest::Client, url: String| async move {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .unwrap()
    };
    let before = peer(h.client.clone(), h.url("/healthz")).await;
    let old_ca = std::fs::read_to_string(h.dir.join(tls::CA_FILE)).unwrap();
    let new = secret_volume(&h.dir, "second");
    let both = client_trusting(&[&old_ca, &new.ca_pem]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = peer(both.clone(), h.url("/healthz")).await;
        if now != before {
            let pem = rustls_pki_types::pem::PemObject::from_pem_slice(new.cert_pem.as_bytes());
            let expected: rustls_pki_types::CertificateDer = pem.unwrap();
            assert_eq!(now, expected.as_ref());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Clients that trust only the new CA now connect.
    let fresh = client_trusting(&[&new.ca_pem]);
    assert_eq!(
        fresh.get(h.url("/readyz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn shutdown_turns_readiness_off_first() {
    let h = start(Mode::Enforce).await;
    assert_eq!(
        h.client
            .get(h.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    h.running.set_unready();
    assert_eq!(
        h.client
            .get(h.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    h.running.shutdown(Duration::from_secs(1));
    h.running.wait().await.unwrap();
}

#[test]
fn the_binary_drains_and_exits_cleanly_on_sigterm() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::generate(&["localhost".into()], 1).unwrap();
    tls::write(dir.path(), &certs).unwrap();
    let served = support::serve::serve(|command| {
        command
            .args(["--shutdown-delay", "0", "--tls-cert"])
            .arg(dir.path().join(tls::CERT_FILE))
            .arg("--tls-key")
            .arg(dir.path().join(tls::KEY_FILE))
            .stderr(Stdio::piped());
    });
    let (mut child, lines) = (served.child, served.log);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// A cluster view whose every read hangs, like a wedged cache.
struct StalledCluster;

impl raygate::admission::ClusterState for StalledCluster {
    fn network_policies(
        &self,
        _: &str,
    ) -> Option<Vec<std::sync::Arc<k8s_openapi::api::networking::v1::NetworkPolicy>>> {
        std::thread::sleep(Duration::from_secs(2));
        None
    }
    fn ray_clusters(&self, _: &str) -> Option<Vec<std::sync::Arc<kube::core::DynamicObject>>> {
        std::thread::sleep(Duration::from_secs(2));
        None
    }
}

fn engine_with_deadline(failure_actions: &str) -> Engine {
    let text = raygate::policy::BUILT_IN_POLICY
        .replace("milliseconds: 2000", "milliseconds: 300")
        .replace(
            "failureActions: {ports: deny, placement: deny, network-policy: deny, resources: deny}",
            &format!("failureActions: {failure_actions}"),
        );
    Engine::new(Policy::from_yaml(&text, "p.yaml").unwrap())
}

/// A Ray object raygate cannot judge in time is denied, never admitted unchecked: families
/// not listed in failureActions fail closed.
#[tokio::test]
async fn a_stalled_cluster_view_is_answered_by_the_deadline_and_fails_closed_by_default() {
    let stalled = || Some(ClusterAccess::View(std::sync::Arc::new(StalledCluster)));
    let h = start_with(engine_with_deadline("{}"), stalled()).await;
    let started = Instant::now();
    let answer = h
        .post("/validate", &review(&cluster("c"), "CREATE", false))
        .await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], false, "{answer}");
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("no decision within 300 ms")
            && message.contains("fails closed for ports, placement, network-policy, resources"),
        "{message}"
    );
    assert!(
        h.metrics()
            .await
            .contains("raygate_undecided_total{endpoint=\"validate\"} 1")
    );
    // Nothing else waits on the stalled request: health and other kinds answer at once.
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kuberay"}});
    let answer = h
        .post("/validate", &review(&config_map, "CREATE", false))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    // The mutating call never denies: it lets the object through unfilled.
    let answer = h
        .post("/mutate", &review(&cluster("c"), "CREATE", false))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_null());

    // Only a policy that allows every family lets the same stall through, with a warning.
    let h = start_with(
        engine_with_deadline(
            "{ports: allow, placement: allow, network-policy: allow, resources: allow}",
        ),
        stalled(),
    )
    .await;
    let answer = h
        .post("/validate", &review(&cluster("c"), "CREATE", false))
        .await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{answer}");
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(warning.contains("no decision within 300 ms"), "{warning}");
}

/// A cluster spec past the policy's worker-group limit is denied at once, unjudged, and an
/// evaluation that reaches the deadline stops and denies.
#[test]
fn oversized_or_overdue_objects_are_denied_unjudged() {
    let mut big = cluster("c");
    let group = big["spec"]["workerGroupSpecs"][0].clone();
    big["spec"]["workerGroupSpecs"] = json!(
        (0..65)
            .map(|i| {
                let mut g = group.clone();
                g["groupName"] = json!(format!("g{i}"));
                g
            })
            .collect::<Vec<_>>()
    );
    let engine = raygate::Engine::new(Policy::built_in());
    let view = raygate::ray::ObjectRef::from_value(&big).unwrap();
    let d = engine.evaluate(&view, &raygate::Context::WITHOUT_CLUSTER);
    assert!(!d.allowed());
    assert_eq!(
        d.violations
            .iter()
            .map(|v| v.rule.as_str())
            .collect::<Vec<_>>(),
        ["limits/worker-groups"]
    );
    // An evaluation already past its deadline stops and denies.
    let policies = vec![std::sync::Arc::new(
        serde_json::from_value(network_policy("c")).unwrap(),
    )];
    let late = raygate::Context {
        deadline: Some(Instant::now() - Duration::from_millis(1)),
        ..raygate::Context::complete(&policies)
    };
    let compliant = cluster("c");
    let view = raygate::ray::ObjectRef::from_value(&compliant).unwrap();
    let d = engine.evaluate(&view, &late);
    assert!(!d.allowed());
    assert!(
        d.violations
            .iter()
            .any(|v| v.rule.as_str() == "limits/deadline"),
        "{:#?}",
        d.violations
    );
}

/// A CA and one client certificate it signed, as the API server would present.
fn client_identity(name: &str) -> (String, reqwest::Identity) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap();
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    (
        ca_cert.pem(),
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap(),
    )
}

#[tokio::test]
async fn with_a_client_ca_only_the_api_servers_certificate_gets_an_answer() {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = secret_volume(dir, "first");
    let (client_ca, apiserver) = client_identity("kube-apiserver");
    let (_, stranger) = client_identity("stranger");
    let ca_path = dir.join("client-ca.crt");
    std::fs::write(&ca_path, &client_ca).unwrap();
    let running = raygate::server::start(ServeConfig {
        client_ca: Some(ca_path),
        ..serve_config(dir, Engine::new(Policy::built_in()))
    })
    .await
    .unwrap();
    let url = format!("https://localhost:{}/validate", running.addr.port());
    let body = review(&cluster("c"), "CREATE", false);
    let client = |identity: Option<reqwest::Identity>| {
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5));
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    };
    for (who, identity) in [
        ("no certificate", None),
        ("another CA's certificate", Some(stranger)),
    ] {
        let refused = client(identity).post(&url).json(&body).send().await;
        assert!(refused.is_err(), "{who} was answered: {refused:?}");
    }
    let answered = client(Some(apiserver))
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let answer: Value = answered.json().await.unwrap();
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
}

/// Load from `clients` tasks until `stop`; returns the requests answered, and each failure
/// with when it happened.
async fn load(
    url: String,
    clients: Vec<reqwest::Client>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Vec<(Instant, String)>) {
    let body = review(&cluster("c"), "CREATE", false).to_string();
    let mut tasks = Vec::new();
    for client in clients {
        let (url, body, stop) = (url.clone(), body.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answered, mut failures) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                        Ok(v) if v["response"]["uid"].is_string() => answered += 1,
                        other => failures.push((Instant::now(), format!("bad answer: {other:?}"))),
                    },
                    Ok(r) => failures.push((Instant::now(), format!("status {}", r.status()))),
                    Err(e) => failures.push((Instant::now(), format!("{e:?}"))),
                }
            }
            (answered, failures)
        }));
    }
    let mut total = (0, Vec::new());
    for task in tasks {
        let (answered, failures) = task.await.unwrap();
        total.0 += answered;
        total.1.extend(failures);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let generations: Vec<tls::GeneratedCerts> = (0..4)
        .map(|_| tls::generate(&["localhost".into(), "127.0.0.1".into()], 2).unwrap())
        .collect();
    install_generation(&dir, "gen0", &generations[0]);
    let running = raygate::server::start(serve_config(&dir, Engine::new(Policy::built_in())))
        .await
        .unwrap();
    let url = format!("https://localhost:{}/validate", running.addr.port());
    // During a rotation the caBundle holds old and new CAs, as cert-manager's does.
    let cas: Vec<&str> = generations.iter().map(|g| g.ca_pem.as_str()).collect();
    let kept_alive = client_trusting(&cas);
    let mut clients = vec![kept_alive.clone(); 3];
    // A fresh connection, so a fresh handshake, for every request of these.
    clients.extend((0..3).map(|_| client_trusting(&cas)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(load(url.clone(), clients, stop.clone()));
    for (i, generation) in generations.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        install_generation(&dir, &format!("gen{i}"), generation);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failures) = load.await.unwrap();
    eprintln!(
        "rotation under load: {answered} requests answered across {} rotations, {} failed",
        generations.len() - 1,
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(answered > 50, "only {answered} requests");
    // The last certificate is the one served now.
    let only_last = client_trusting(&[&generations[3].ca_pem]);
    let r = only_last.get(h_url(&running, "/healthz")).send().await;
    assert!(r.is_ok(), "{r:?}");
}

fn h_url(running: &Running, path: &str) -> String {
    format!("https://localhost:{}{path}", running.addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_turns_unready_first_and_finishes_what_is_in_flight() {
    use std::process::{Command, Stdio};
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::generate(&["localhost".into()], 1).unwrap();
    tls::write(dir.path(), &certs).unwrap();
    let served = support::serve::serve(|command| {
        command
            .args(["--shutdown-delay", "1", "--tls-cert"])
            .arg(dir.path().join(tls::CERT_FILE))
            .arg("--tls-key")
            .arg(dir.path().join(tls::KEY_FILE))
            .env("RUST_LOG", "warn,raygate=info")
            .stderr(Stdio::null());
    });
    let (mut child, lines, port) = (served.child, served.log, served.port);
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let url = format!("https://localhost:{port}/validate");
    let ready_url = format!("https://localhost:{port}/readyz");

    let clients: Vec<reqwest::Client> = (0..4).map(|_| client_trusting(&[&certs.ca_pem])).collect();
    let probe = client_trusting(&[&certs.ca_pem]);
    assert_eq!(probe.get(&ready_url).send().await.unwrap().status(), 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(load(url.clone(), clients, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The drain begins after --shutdown-delay (1 s); until then everything must be answered.
    let drain = Instant::now() + Duration::from_secs(1);
    // Unready first, while reviews are still answered.
    let mut unready_while_serving = false;
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        if let Ok(r) = probe.get(&ready_url).send().await
            && r.status() == 503
        {
            unready_while_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unready_while_serving,
        "readiness did not turn off during the delay"
    );
    let answered = probe
        .post(&url)
        .json(&review(&cluster("c"), "CREATE", false))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200, "still answering while unready");

    let exited = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < exited, "still running 20 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failures) = load.await.unwrap();
    assert!(status.success(), "{status}");
    // Once the drain begins the port closes: a new connection is refused, and a request
    // written to a kept-alive connection the server has just closed as idle never arrives.
    // hyper says so as a broken pipe on send, or, when the close wins the race with the
    // write, as the request canceled because the connection closed. Any other failure, or
    // any failure before the drain, cut a request.
    let never_arrived = |f: &str| {
        f.contains("ConnectionRefused")
            || f.contains("Connect")
            || (f.contains("SendRequest") && f.contains("BrokenPipe"))
            || (f.contains("Canceled") && f.contains("connection closed"))
    };
    let cut: Vec<&String> = failures
        .iter()
        .filter(|(at, f)| *at < drain || !never_arrived(f))
        .map(|(_, f)| f)
        .collect();
    eprintln!(
        "SIGTERM under load: {answered} requests answered, {} refused after the drain, {} cut",
        failures.len() - cut.len(),
        cut.len()
    );
    assert!(cut.is_empty(), "{cut:?}");
    assert!(answered > 50, "only {answered} requests");
}

/// The autoscaler's scale-up of a cluster created before raygate: through the real server,
/// /mutate re-plans nothing and /validate lets it through; a new break is still denied.
#[tokio::test]
async fn an_update_is_judged_against_its_old_object() {
    let h = start(Mode::Enforce).await;
    let mut old = cluster("ray");
    set(
        &mut old,
        "/spec/headGroupSpec/rayStartParams/port",
        json!("6379"),
    );
    let with_old = |new: &Value| {
        let mut r = review(new, "UPDATE", false);
        r["request"]["oldObject"] = old.clone();
        r
    };
    let mut scaled = old.clone();
    set(&mut scaled, "/spec/workerGroupSpecs/0/replicas", json!(4));
    let mutated = h.post("/mutate", &with_old(&scaled)).await;
    assert!(response(&mutated).get("patch").is_none(), "{mutated}");
    let validated = h.post("/validate", &with_old(&scaled)).await;
    assert_eq!(response(&validated)["allowed"], true, "{validated}");
    assert!(
        response(&validated).get("warnings").is_none(),
        "{validated}"
    );

    // An unrelated edit keeps the old break as a warning that says why it passes.
    let mut edited = old.clone();
    edited["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}]);
    let validated = h.post("/validate", &with_old(&edited)).await;
    let r = response(&validated);
    assert_eq!(r["allowed"], true, "{validated}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("already so before this update"),
        "{warnings}"
    );

    // A new break is denied.
    let mut broken = old.clone();
    set(
        &mut broken,
        "/spec/headGroupSpec/rayStartParams/dashboard-port",
        json!("8265"),
    );
    let validated = h.post("/validate", &with_old(&broken)).await;
    assert_eq!(response(&validated)["allowed"], false, "{validated}");
}

/// Over HTTP/2 (as the API server speaks it), a request answered by a route that does not
/// want its body (an unknown path, a POST to a GET route) is still answered cleanly every
/// time. Before, the answer raced the upload and curl saw a stream reset about half the time.
/// curl is the client because it reports such a reset; hyper's own client hides it.
#[tokio::test]
async fn every_path_answers_cleanly_over_http2_and_http1() {
    let h = start(Mode::Enforce).await;
    let body = h.dir.join("body");
    std::fs::write(&body, vec![b'x'; 256 * 1024]).unwrap();
    let port = h.running.addr.port();
    for protocol in ["--http2", "--http1.1"] {
        for (path, status) in [("/nope", "404"), ("/healthz", "405"), ("/readyz", "405")] {
            for attempt in 0..10 {
                let mut curl = std::process::Command::new("curl");
                curl.args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .arg(protocol)
                .arg("--cacert")
                .arg(h.dir.join(tls::CA_FILE))
                .arg("--resolve")
                .arg(format!("localhost:{port}:127.0.0.1"))
                .arg("--data-binary")
                .arg(format!("@{}", body.display()))
                .arg(format!("https://localhost:{port}{path}"));
                // The server runs on this test's runtime: wait for curl off it.
                let out = tokio::task::spawn_blocking(move || curl.output())
                    .await
                    .unwrap()
                    .expect("curl runs");
                let shown = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{protocol} {path} #{attempt}: {} {shown}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let version = if protocol == "--http2" { "2" } else { "1.1" };
                assert_eq!(shown, format!("{status} {version}"), "{protocol} {path}");
            }
        }
    }
}

/// Writes `text` as the `policy.yaml` of a ConfigMap volume, swapping `..data` as the kubelet does.
fn install_policy(dir: &Path, generation: &str, text: &str) {
    let version = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("policy.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("policy.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/policy.yaml", &link).unwrap();
    }
}

/// A changed policy file is applied without a restart; a broken one is refused and the policy
/// in force keeps serving; `/readyz` and `raygate_policy_info` say which one serves.
#[tokio::test]
async fn a_changed_policy_file_is_applied_without_a_restart_and_a_broken_one_refused() {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let certs = secret_volume(&dir, "first");
    let policy_dir = dir.join("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    install_policy(&policy_dir, "one", raygate::policy::BUILT_IN_POLICY);
    let path = policy_dir.join("policy.yaml");
    let running = raygate::server::start(ServeConfig {
        policy_file: Some(raygate::server::PolicyFile {
            path: path.clone(),
            mode: None,
        }),
        ..serve_config(&dir, Engine::new(Policy::load(&path).unwrap()))
    })
    .await
    .unwrap();
    let h = Harness {
        running,
        client: client_trusting(&[&certs.ca_pem]),
        _dir: tmp,
        dir,
    };
    let ready = || async {
        h.client
            .get(h.url("/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = ready().await;
    assert!(
        before.starts_with("ok: policy ray-platform sha256:"),
        "{before}"
    );
    let denied = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "CREATE", false),
        )
        .await;
    assert_eq!(response(&denied)["allowed"], false);

    // The platform team switches the plan to audit: the next review uses it.
    install_policy(
        &policy_dir,
        "two",
        &raygate::policy::BUILT_IN_POLICY.replace("mode: enforce", "mode: audit"),
    );
    let mut allowed = false;
    for _ in 0..50 {
        let answer = h
            .post(
                "/validate",
                &review(&sample_on_default_ports(), "CREATE", false),
            )
            .await;
        if response(&answer)["allowed"] == true {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "the new policy was never applied");
    let after = ready().await;
    assert_ne!(after, before);
    assert!(
        h.metrics()
            .await
            .contains(r#"raygate_policy_reloads_total{result="applied"} 1"#)
    );

    // A broken policy is refused, named by file and field; the audit policy keeps serving.
    install_policy(
        &policy_dir,
        "three",
        &raygate::policy::BUILT_IN_POLICY.replace("port: 6380,", "port: 70000,"),
    );
    let mut rejected = false;
    for _ in 0..50 {
        if h.metrics()
            .await
            .contains(r#"raygate_policy_reloads_total{result="rejected"} 1"#)
        {
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected, "{}", h.metrics().await);
    assert_eq!(ready().await, after);
    let answer = h
        .post(
            "/validate",
            &review(&sample_on_default_ports(), "CREATE", false),
        )
        .await;
    assert_eq!(response(&answer)["allowed"], true);
    let metrics = h.metrics().await;
    let versions = metrics
        .lines()
        .filter(|l| l.starts_with("raygate_policy_info{"))
        .count();
    assert_eq!(versions, 1, "{metrics}");
}

/// Every metric the docs, the README, the policy file and deploy/ name is one raygate exports.
#[tokio::test]
async fn every_metric_the_docs_name_exists() {
    let h = start(Mode::Enforce).await;
    // The liveness probe's path is on the plain metrics listener.
    let addr = h.running.metrics_addr.unwrap();
    let live = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let exported: std::collections::BTreeSet<&str> = h
        .running
        .metric_names()
        .iter()
        .map(String::as_str)
        .collect();
    // What is set is exported under those names.
    let metrics = h.metrics().await;
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split_whitespace().next().unwrap();
        assert!(exported.contains(name), "{name} is exported but not listed");
    }
    let mut files = vec![
        std::path::PathBuf::from("README.md"),
        "policies/ray-platform.yaml".into(),
    ];
    for dir in ["docs", "deploy"] {
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
    }
    let mut named = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (at, _) in text.match_indices("raygate_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let base = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            named += 1;
            assert!(
                exported.contains(base),
                "{} names {name}, which raygate does not export: {exported:?}",
                file.display()
            );
        }
    }
    assert!(named > 0);
}

/// raygate's enforcement mark goes on at CREATE and comes back when an update drops it (a
/// server-side apply of the manifest it was never in), so Argo CD's server-side diff sees no
/// drift and removing it never spares a cluster's Pods.
#[tokio::test]
async fn the_enforcement_mark_is_set_at_create_and_put_back_on_update() {
    let h = start(Mode::Enforce).await;
    let object = cluster("ray");
    let mutated = h.post("/mutate", &review(&object, "CREATE", false)).await;
    let patch = patch_of(response(&mutated));
    let marked = apply(&object, &patch);
    assert_eq!(
        marked["metadata"]["annotations"]["raygate.dev/enforced"],
        "true"
    );
    // The compliant cluster had nothing filled in, so kubectl shows no warning.
    assert!(response(&mutated).get("warnings").is_none(), "{mutated}");
    // An update without the mark: it is put back, silently, and nothing else changes.
    let mut update = review(&object, "UPDATE", false);
    update["request"]["oldObject"] = marked.clone();
    let answer = h.post("/mutate", &update).await;
    let patch = patch_of(response(&answer));
    assert_eq!(apply(&object, &patch), marked);
    assert!(response(&answer).get("warnings").is_none(), "{answer}");
    // An update that drops a planned value the cluster had: it is put back, and said so.
    let mut dropped = marked.clone();
    remove(
        &mut dropped,
        "/spec/headGroupSpec/rayStartParams/dashboard-port",
    );
    let mut update = review(&dropped, "UPDATE", false);
    update["request"]["oldObject"] = marked.clone();
    let answer = h.post("/mutate", &update).await;
    let patch = patch_of(response(&answer));
    assert_eq!(apply(&dropped, &patch), marked);
    assert_eq!(
        response(&answer)["warnings"],
        json!(["raygate put back 1 value(s) of the platform plan that this update dropped"]),
        "{answer}"
    );
    // A cluster that never had it (created before raygate) does not get it on update.
    let mut legacy = review(&object, "UPDATE", false);
    legacy["request"]["oldObject"] = object.clone();
    let answer = h.post("/mutate", &legacy).await;
    assert!(response(&answer).get("patch").is_none(), "{answer}");
}
