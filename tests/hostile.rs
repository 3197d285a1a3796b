//! Hostile clients against the real TLS server: slow headers and bodies, floods of idle
//! connections, plaintext, old TLS versions, oversized and deeply nested bodies, huge
//! oldObjects. After each, a good request must still be answered well within 2 s by a
//! server task that is still running.
//!
//! Timeouts are shortened through [`Limits`] so that the suite stays quick; each test prints
//! what it measured (`cargo test --test hostile -- --nocapture`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raygate::server::{Limits, Running, ServeConfig};
use raygate::{Engine, Policy, tls};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Short timeouts for tests; production uses `Limits::default()`.
fn quick() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        max_connections: 1024,
    }
}

struct Server {
    running: Running,
    ca: rustls::RootCertStore,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(limits: Limits) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::generate(&["localhost".into()], 1).unwrap();
    tls::write(dir.path(), &certs).unwrap();
    let running = raygate::server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: None,
        tls_cert: dir.path().join(tls::CERT_FILE),
        tls_key: dir.path().join(tls::KEY_FILE),
        client_ca: None,
        engine: Engine::new(Policy::built_in()),
        policy_file: None,
        cluster: None,
        limits,
    })
    .await
    .unwrap();
    let mut ca = rustls::RootCertStore::empty();
    ca.add(rustls::pki_types::CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
        // A new connection for every request: the listener itself must still take them.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Server {
        running,
        ca,
        client,
        _dir: dir,
    }
}

fn review(operation: &str, object: &Value, old: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4a5e0f3e-hostile",
            "kind": {"group": "ray.io", "version": "v1", "kind": "RayCluster"},
            "resource": {"group": "ray.io", "version": "v1", "resource": "rayclusters"},
            "name": "ray",
            "namespace": "kuberay",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
        }
    })
}

/// A RayCluster on Ray's default head port: denied, with a fix to show.
fn denied_cluster() -> Value {
    let mut object = support::cluster("ray");
    support::set(
        &mut object,
        &format!("{}/ports/0/containerPort", support::HEAD_RAY),
        json!(6379),
    );
    object
}

impl Server {
    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr().port())
    }

    /// A good review on a new connection: answered correctly, and how long it took.
    async fn good_request(&self) -> Duration {
        assert!(self.running.is_serving(), "the server task has ended");
        let started = Instant::now();
        let response = self
            .client
            .post(self.url("/validate"))
            .json(&review("CREATE", &support::cluster("ray"), &Value::Null))
            .send()
            .await
            .expect("the good request is answered");
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let took = started.elapsed();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        assert!(self.running.is_serving(), "the server task has ended");
        took
    }

    /// After a hostile case: the next good request is answered at normal speed.
    async fn still_serves(&self, case: &str) {
        let took = self.good_request().await;
        println!("{case}: a good request answered in {took:?} afterwards");
        assert!(took < Duration::from_secs(2), "{case}: took {took:?}");
    }

    async fn tls(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(self.ca.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr()).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("the TLS handshake")
    }
}

/// Reads until the peer closes: what it sent, and when it closed (`None`: still open at
/// `within`).
async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (seen, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, Some(started.elapsed())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until the peer stops taking them; returns how
/// many it took and when it stopped.
async fn trickle<S: AsyncWrite + AsyncRead + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    every: Duration,
) -> (usize, Duration) {
    let started = Instant::now();
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
            return (i, started.elapsed());
        }
        // The server answers 408 or closes; either ends the trickle.
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return (i + 1, started.elapsed()),
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                return (i + 1, started.elapsed());
            }
        }
    }
    panic!("the server took all {} bytes", bytes.len());
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let server = start(quick()).await;
    // Headers at one byte per 300 ms: never finished within the 1 s header timeout.
    let mut stream = server.tls(b"http/1.1").await;
    let headers = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let (sent, after) = trickle(&mut stream, headers, Duration::from_millis(300)).await;
    println!("slow headers: cut off after {sent} bytes, {after:?}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    server.still_serves("slow headers").await;

    // The same on a kept-alive connection, after a good first request.
    let mut stream = server.tls(b"http/1.1").await;
    let body = review("CREATE", &support::cluster("ray"), &Value::Null).to_string();
    let request = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (sent, after) = trickle(&mut stream, headers, Duration::from_millis(300)).await;
    println!("slow headers on a kept-alive connection: cut off after {sent} bytes, {after:?}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    server.still_serves("slow headers (keep-alive)").await;
}

#[tokio::test]
async fn slow_bodies_are_cut_off() {
    let server = start(quick()).await;
    let mut stream = server.tls(b"http/1.1").await;
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
        .await
        .unwrap();
    // A byte every 200 ms keeps the connection busy, but the request never finishes.
    let (sent, after) = trickle(&mut stream, &[b' '; 1000], Duration::from_millis(200)).await;
    println!("slow body: cut off after {sent} more bytes, {after:?}");
    assert!(after < Duration::from_secs(4), "{after:?}");
    server.still_serves("slow body").await;
}

#[tokio::test]
async fn thousands_of_idle_connections_are_bounded() {
    let limits = Limits {
        handshake_timeout: Duration::from_secs(3),
        header_timeout: Duration::from_secs(3),
        max_connections: 200,
        ..quick()
    };
    let server = Arc::new(start(limits).await);
    let started = Instant::now();
    // 150 connections finish the TLS handshake and idle; 1,850 more never start it.
    let mut handshakes = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let server = server.clone();
        handshakes.spawn(async move { server.tls(b"http/1.1").await });
    }
    let handshaken = handshakes.join_all().await;
    let mut raw = Vec::new();
    for _ in 0..1850 {
        raw.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    let flooded = started.elapsed();
    // Connections past the cap are closed as they are accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = |stream: &TcpStream| {
        let mut buf = [0u8; 4096];
        loop {
            match stream.try_read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    };
    let held_raw = raw.iter().filter(|s| open(s)).count();
    let held_tls = handshaken.iter().filter(|s| open(s.get_ref().0)).count();
    println!(
        "2,000 connections opened in {flooded:?}; the server holds {held_tls} handshaken and {held_raw} bare ones (cap {})",
        limits.max_connections
    );
    assert_eq!(held_tls, 150, "the first connections keep their slots");
    assert!(
        held_tls + held_raw <= limits.max_connections,
        "{held_tls} + {held_raw} connections held"
    );

    // At the cap a new client fails fast instead of hanging.
    let refused = Instant::now();
    let mut extra = TcpStream::connect(server.addr()).await.unwrap();
    let (_, closed) = read_until_closed(&mut extra, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "a connection past the cap is left hanging"
    );
    println!(
        "at the cap: a new connection closed in {:?}",
        refused.elapsed()
    );

    // The idle ones go at the handshake and first-request timeouts, freeing every slot.
    let deadline = Instant::now() + Duration::from_secs(7);
    while raw.iter().any(open) || handshaken.iter().any(|s| open(s.get_ref().0)) {
        assert!(
            Instant::now() < deadline,
            "idle connections outlive their timeouts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "all 2,000 closed by the server {:?} after the flood",
        started.elapsed() - flooded
    );
    server.still_serves("2,000 idle connections").await;
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed() {
    // The idle timeout (1 s) is shorter than the header timeout (3 s): it is what closes them.
    let limits = Limits {
        header_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(1),
        ..quick()
    };
    let server = start(limits).await;

    // HTTP/1.1, after a request.
    let mut stream = server.tls(b"http/1.1").await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle HTTP/1.1 connection stays open");
    println!("idle HTTP/1.1 keep-alive connection closed after {closed:?}");
    assert!(closed < Duration::from_millis(2500), "{closed:?}");

    // HTTP/2: the client preface and SETTINGS, then nothing.
    let mut stream = server.tls(b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle HTTP/2 connection stays open");
    println!("idle HTTP/2 connection closed after {closed:?}");
    assert!(closed < Duration::from_millis(2500), "{closed:?}");
    server.still_serves("idle keep-alive").await;
}

#[tokio::test]
async fn plaintext_http_is_refused() {
    let server = start(quick()).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    println!(
        "plaintext: {} bytes back, closed after {closed:?}",
        seen.len()
    );
    assert!(closed.is_some(), "a plaintext connection is left open");
    assert!(!seen.starts_with(b"HTTP/"), "answered in plaintext");
    if let Some(&first) = seen.first() {
        assert_eq!(first, 0x15, "anything sent back is a TLS alert: {seen:?}");
    }
    server.still_serves("plaintext HTTP").await;
}

/// A ClientHello record offering only `version` (no supported_versions extension, so
/// nothing newer), with cipher suites and extensions that version can use.
fn client_hello(version: u16) -> Vec<u8> {
    let mut extensions = Vec::new();
    let mut extension = |kind: u16, data: &[u8]| {
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
        extensions.extend_from_slice(data);
    };
    // server_name: localhost
    extension(0x0000, b"\x00\x0c\x00\x00\x09localhost");
    // supported_groups: x25519, secp256r1, secp384r1
    extension(0x000a, b"\x00\x06\x00\x1d\x00\x17\x00\x18");
    // ec_point_formats: uncompressed
    extension(0x000b, b"\x01\x00");
    // signature_algorithms (TLS 1.2's, but offered at every version so that the version is
    // the only thing refused): ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extension(0x000d, b"\x00\x06\x04\x03\x08\x04\x04\x01");
    let suites: &[u16] = if version >= 0x0303 {
        // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256
        &[0xc02b, 0xc02f]
    } else {
        // ECDHE-ECDSA-AES128-SHA, ECDHE-RSA-AES128-SHA, AES128-SHA, DES-CBC3-SHA
        &[0xc009, 0xc013, 0x002f, 0x000a]
    };
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 framing
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

async fn hello(addr: SocketAddr, version: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&client_hello(version)).await.unwrap();
    let mut answer = vec![0u8; 5];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut answer))
        .await
        .expect("an answer to the ClientHello")
        .expect("a record header");
    let length = u16::from_be_bytes([answer[3], answer[4]]) as usize;
    let mut rest = vec![0u8; length];
    stream.read_exact(&mut rest).await.unwrap();
    answer.extend(rest);
    answer
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused() {
    let server = start(quick()).await;
    // The same hand-made ClientHello at TLS 1.2 gets a ServerHello: the hello is sound.
    let accepted = hello(server.addr(), 0x0303).await;
    assert_eq!(accepted[0], 0x16, "a handshake record: {accepted:?}");
    assert_eq!(accepted[5], 0x02, "a ServerHello: {accepted:?}");
    for (name, version) in [("TLS 1.0", 0x0301), ("TLS 1.1", 0x0302)] {
        let answer = hello(server.addr(), version).await;
        println!("{name}: the server answers {answer:02x?}");
        // An alert record: fatal (2), protocol_version (70).
        assert_eq!(answer[0], 0x15, "{name}: {answer:?}");
        assert_eq!(&answer[5..7], &[2, 70], "{name}: {answer:?}");
        server.still_serves(name).await;
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = start(quick()).await;
    let limit = raygate::server::MAX_BODY_BYTES;
    // Declared up front, and sent.
    let started = Instant::now();
    let response = server
        .client
        .post(server.url("/validate"))
        .body(vec![b' '; limit + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    println!("8 MiB + 1 declared: 413 in {:?}", started.elapsed());
    server.still_serves("oversized declared body").await;

    // Chunked, without a length: cut at the limit.
    let stream = server.tls(b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Read while writing: the answer comes before the body ends.
    let answer =
        tokio::spawn(async move { read_until_closed(&mut reader, Duration::from_secs(10)).await });
    writer
        .write_all(
            b"POST /validate HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = vec![b' '; 1 << 20];
    let started = Instant::now();
    let mut sent = 0;
    while sent <= limit + (1 << 20) && !answer.is_finished() {
        let header = format!("{:x}\r\n", chunk.len());
        let write = async {
            writer.write_all(header.as_bytes()).await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await
        };
        if write.await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (seen, _) = answer.await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    println!(
        "chunked, {sent} bytes sent: {:?} in {:?}",
        text.lines().next(),
        started.elapsed()
    );
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    server.still_serves("oversized chunked body").await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_not_a_crash() {
    let server = start(quick()).await;
    let depth = 1_000_000;
    let deep = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    // In the spec, which the engine reads; in metadata, where decoding skips it unread.
    for (place, object) in [
        (
            "spec",
            format!(
                r#"{{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{{"name":"ray"}},"spec":{deep}}}"#
            ),
        ),
        (
            "metadata",
            format!(
                r#"{{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{{"name":"ray","x":{deep}}},"spec":{{}}}}"#
            ),
        ),
    ] {
        let body = review("CREATE", &json!("OBJECT"), &Value::Null)
            .to_string()
            .replace(r#""OBJECT""#, &object);
        assert!(body.len() < raygate::server::MAX_BODY_BYTES);
        let started = Instant::now();
        let response = server
            .client
            .post(server.url("/validate"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        println!(
            "{depth} levels of {{\"a\": in {place} -> {status} in {:?}: {text}",
            started.elapsed()
        );
        assert!(status == 400 || status == 200, "{status}");
        server.still_serves("deep nesting").await;
    }
}

#[tokio::test]
async fn an_update_with_a_huge_old_object_is_answered() {
    let server = start(quick()).await;
    let mut old = support::cluster("ray");
    // 7 MiB of annotations: within the body limit, well past the API server's own.
    let annotations: serde_json::Map<String, Value> = (0..7 * 1024)
        .map(|i| (format!("example.com/note-{i}"), json!("x".repeat(1000))))
        .collect();
    old["metadata"]["annotations"] = Value::Object(annotations);
    let body = review("UPDATE", &denied_cluster(), &old);
    let size = body.to_string().len();
    assert!(
        size > 7 << 20 && size < raygate::server::MAX_BODY_BYTES,
        "{size}"
    );
    let started = Instant::now();
    let response = server
        .client
        .post(server.url("/validate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let took = started.elapsed();
    println!("UPDATE with a {size}-byte body answered in {took:?}");
    // Judged against the old object: the update newly breaks the head port.
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let small: Value = server
        .client
        .post(server.url("/validate"))
        .json(&review(
            "UPDATE",
            &denied_cluster(),
            &support::cluster("ray"),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, small);
    assert!(took < Duration::from_secs(10), "{took:?}");
    server.still_serves("huge oldObject").await;
}
