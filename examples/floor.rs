//! The physical floor of the load benchmark: raygate's HTTPS stack (the same rustls
//! configuration from `raygate::tls::load`, TLS 1.2 and 1.3, ALPN h2 and http/1.1, the same
//! axum-server and hyper settings) with a handler that reads the body and returns a fixed
//! AdmissionReview. Whatever raygate costs above this is decoding, rules and encoding.
//!
//! `cargo run --release --example floor -- --listen 127.0.0.1:8444 --tls-cert tls.crt --tls-key tls.key`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;

/// The same allocator as `raygate serve`, so the floor differs from it only in the handler.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

struct Args {
    listen: SocketAddr,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    /// Answer with the request's uid, as the API server requires (scripts/bench-apiserver);
    /// off for oha, whose reviews all carry RESPONSE's uid.
    echo_uid: bool,
}

fn args() -> Args {
    let mut listen: SocketAddr = "127.0.0.1:8444".parse().expect("an address");
    let mut tls_cert = PathBuf::from("certs/tls.crt");
    let mut tls_key = PathBuf::from("certs/tls.key");
    let mut echo_uid = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--echo-uid" {
            echo_uid = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value.parse().expect("--listen ADDR"),
            "--tls-cert" => tls_cert = value.into(),
            "--tls-key" => tls_key = value.into(),
            other => panic!("unknown flag {other}"),
        }
    }
    Args {
        listen,
        tls_cert,
        tls_key,
        echo_uid,
    }
}

/// The floor's answer with the review's own uid: the first `"uid":"…"` of the body, which is
/// `request.uid` in the API server's AdmissionReview.
async fn answer_with_uid(body: Bytes) -> impl IntoResponse {
    const KEY: &[u8] = b"\"uid\":\"";
    let uid = body
        .windows(KEY.len())
        .position(|w| w == KEY)
        .map(|at| &body[at + KEY.len()..])
        .and_then(|rest| rest.iter().position(|b| *b == b'"').map(|end| &rest[..end]))
        .and_then(|uid| std::str::from_utf8(uid).ok())
        .unwrap_or("");
    let text = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{uid}","allowed":true}}}}"#
    );
    ([(header::CONTENT_TYPE, "application/json")], text)
}

async fn answer(body: Bytes) -> impl IntoResponse {
    // Read the whole body, as the webhook does, and answer without looking at it.
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], RESPONSE)
}

fn main() -> anyhow::Result<()> {
    let args = args();
    let loaded = raygate::tls::load(&args.tls_cert, &args.tls_key, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = if args.echo_uid {
            Router::new()
                .route("/validate", post(answer_with_uid))
                .route("/mutate", post(answer_with_uid))
        } else {
            Router::new()
                .route("/validate", post(answer))
                .route("/mutate", post(answer))
        };
        let app = app.layer(DefaultBodyLimit::max(raygate::server::MAX_BODY_BYTES));
        let config = RustlsConfig::from_config(loaded.config);
        let mut server = axum_server::bind(args.listen)
            .acceptor(RustlsAcceptor::new(config).handshake_timeout(Duration::from_secs(5)));
        server
            .http_builder()
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(5));
        server
            .http_builder()
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        eprintln!("floor listening on https://{}", args.listen);
        server.serve(app.into_make_service()).await
    })?;
    Ok(())
}
