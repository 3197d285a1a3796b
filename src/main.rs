use std::process::ExitCode;

use clap::Parser;
use raygate::commands::{self, FixOptions, exit};
use raygate::{Engine, Policy};

mod cli;
use cli::{Cli, Command, LogFormat, PolicyArgs};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn load_policy(args: &PolicyArgs) -> Result<Policy, raygate::policy::Error> {
    match &args.policy {
        Some(path) => Policy::load(path),
        None => Ok(Policy::built_in()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::UNUSABLE
        }
    };
    ExitCode::from(code)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    Ok(match cli.command {
        Command::Check {
            paths,
            policy,
            mode,
            output,
        } => {
            let mut policy = load_policy(&policy)?;
            if let Some(mode) = mode {
                policy = policy.with_mode(mode);
            }
            commands::check(&Engine::new(policy), &paths, output)
        }
        Command::Fix {
            paths,
            policy,
            in_place,
            discard_comments,
        } => commands::fix(
            &Engine::new(load_policy(&policy)?),
            &paths,
            &FixOptions {
                in_place,
                discard_comments,
            },
        ),
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            client_ca,
            metrics_listen,
            policy,
            mode,
            log_format,
            shutdown_delay,
        } => {
            init_tracing(log_format);
            let mut policy = load_policy(&policy)?;
            if let Some(mode) = mode {
                policy = policy.with_mode(mode);
            }
            let (tls_cert, tls_key) = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => (cert, key),
                _ => development_certs(Path::new("certs"))?,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve(
                raygate::server::ServeConfig {
                    listen,
                    metrics_listen: Some(metrics_listen),
                    tls_cert,
                    tls_key,
                    client_ca,
                    engine: Engine::new(policy),
                },
                Duration::from_secs(shutdown_delay),
            ))?;
            exit::OK
        }
        Command::Certs {
            out_dir,
            hosts,
            days,
        } => {
            let certs = raygate::tls::generate(&hosts, days)?;
            raygate::tls::write(&out_dir, &certs)?;
            use base64::Engine as _;
            eprintln!(
                "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key for {1}; caBundle:",
                out_dir.display(),
                hosts.join(", ")
            );
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(certs.ca_pem.as_bytes())
            );
            exit::OK
        }
        Command::Policy { policy } => {
            let policy = load_policy(&policy)?;
            print!("{}", policy.to_yaml());
            exit::OK
        }
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Certificates for a first local run: made once under `dir`, reused afterwards.
fn development_certs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(raygate::tls::CERT_FILE);
    let key = dir.join(raygate::tls::KEY_FILE);
    if !(cert.exists() && key.exists()) {
        let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
        raygate::tls::write(dir, &raygate::tls::generate(&hosts, 365)?)?;
        tracing::info!(
            dir = %dir.display(),
            "no --tls-cert given: created a development CA (ca.crt) and serving certificate for localhost"
        );
    }
    Ok((cert, key))
}

async fn serve(config: raygate::server::ServeConfig, delay: Duration) -> anyhow::Result<()> {
    let running = raygate::server::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: unready now, draining in-flight requests");
    running
        .state
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(delay).await;
    running.shutdown(Duration::from_secs(20));
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
