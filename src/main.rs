use std::process::ExitCode;

/// Admission allocates and frees per request on every tokio thread; glibc's malloc made that
/// about a third of the server's profile (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use raygate::commands::{self, FixOptions, exit};
use raygate::{Engine, Mode, Policy};

mod cli;
use cli::{Cli, Command, LogFormat, PolicyArgs, ServeArgs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The policy file (or the built-in one), with `--mode` over its own mode when given.
fn load_policy(args: &PolicyArgs, mode: Option<Mode>) -> Result<Policy, raygate::policy::Error> {
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::built_in(),
    };
    Ok(match mode {
        Some(mode) => policy.with_mode(mode),
        None => policy,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            exit::UNUSABLE
        }
    };
    ExitCode::from(code)
}

/// The error and its causes, leaving out a cause whose text the message already includes.
fn error_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    Ok(match cli.command {
        Command::Check {
            paths,
            policy,
            namespace,
            mode,
            output,
            fail_on,
        } => {
            let policy = load_policy(&policy, mode.map(Mode::from))?;
            let fail_on: Vec<commands::FailOn> = fail_on.into_iter().map(Into::into).collect();
            commands::check(
                &Engine::new(policy),
                &paths,
                namespace,
                output.into(),
                &fail_on,
            )
        }
        Command::Fix {
            paths,
            policy,
            in_place,
            discard_comments,
            no_network_policies,
            write_replacements,
            kubeconfig,
        } => commands::fix(
            &Engine::new(load_policy(&policy, None)?),
            &paths,
            &live_network_policies(kubeconfig.as_deref())?,
            &FixOptions {
                in_place,
                discard_comments,
                network_policies: !no_network_policies,
                write_replacements,
            },
        ),
        Command::Serve(args) => serve_command(args)?,
        Command::Audit {
            cluster,
            namespace,
            all_namespaces,
            policy,
            mode,
            output,
            write_reports,
        } => {
            let policy = load_policy(&policy, mode.map(Mode::from))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(audit(
                &Engine::new(policy),
                cluster.kubeconfig.as_deref(),
                namespace,
                all_namespaces,
                output.into(),
                write_reports,
            ))?
        }
        Command::Certs {
            out_dir: None,
            hosts,
            days,
            publish,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(publish_certs(&hosts, days, &publish))?,
        Command::Certs {
            out_dir: Some(out_dir),
            hosts,
            days,
            publish: _,
        } => write_certs(&out_dir, &hosts, days)?,
        Command::RayStart { ray_version } => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let (facts, _) = raygate::ray_version::RayFacts::get().for_version(ray_version);
            raygate::commands::ray_start_cases(stdin, stdout, facts)?;
            exit::OK
        }
        Command::Policy { policy } => {
            let policy = load_policy(&policy, None)?;
            print!("{}", policy.to_yaml());
            exit::OK
        }
    })
}

/// `raygate serve`: the webhook until SIGTERM or SIGINT.
fn serve_command(args: ServeArgs) -> anyhow::Result<u8> {
    let ServeArgs {
        listen,
        tls_cert,
        tls_key,
        client_ca,
        metrics_listen,
        policy,
        mode,
        log_format,
        shutdown_delay,
        cluster,
        cache_sync_timeout,
        audit_interval,
        write_reports,
        generate_network_policies,
        generate_network_policies_namespaces,
        generate_network_policies_resync,
    } = args;
    init_tracing(log_format);
    let mode = mode.map(Mode::from);
    let policy_file = policy.policy.clone();
    let policy = load_policy(&policy, mode)?;
    let (tls_cert, tls_key) = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => development_certs(Path::new("certs"))?,
    };
    let config = raygate::server::ServeConfig {
        listen,
        metrics_listen: Some(metrics_listen),
        tls_cert,
        tls_key,
        client_ca,
        engine: Engine::new(policy),
        policy_file: policy_file.map(|path| raygate::server::PolicyFile { path, mode }),
        // Filled in once the client is made, on the runtime.
        cluster: None,
        limits: Default::default(),
    };
    let api_access = move |client| {
        raygate::server::ClusterAccess::Api(raygate::server::ApiAccess {
            client,
            cache_sync_timeout,
            audit_interval,
            write_reports,
            network_policies: generate_network_policies.then(|| {
                raygate::server::NetworkPolicyGeneration {
                    namespace_selector: generate_network_policies_namespaces.clone(),
                    resync: generate_network_policies_resync,
                }
            }),
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = serve_client(cluster.kubeconfig.as_deref()).await?;
        if client.is_none() {
            tracing::warn!(
                "no cluster access (no --kubeconfig, not in a cluster): NetworkPolicy coverage is reported as unverified"
            );
        }
        let config = raygate::server::ServeConfig {
            cluster: client.map(api_access),
            ..config
        };
        serve(config, Duration::from_secs(shutdown_delay)).await
    })?;
    Ok(exit::OK)
}

/// `raygate certs --out-dir`: a CA and serving certificate as files, and the caBundle.
fn write_certs(out_dir: &Path, hosts: &[String], days: u32) -> anyhow::Result<u8> {
    let certs = raygate::tls::generate(hosts, days)?;
    raygate::tls::write(out_dir, &certs)?;
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
    Ok(exit::OK)
}

async fn publish_certs(hosts: &[String], days: u32, args: &cli::PublishArgs) -> anyhow::Result<u8> {
    let config = match &args.cluster.kubeconfig {
        Some(path) => config_from(path).await?,
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    // clap requires all three with --publish.
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (namespace, secret, webhook) = (
        text(&args.namespace),
        text(&args.secret),
        text(&args.webhook),
    );
    let target = raygate::publish::Target {
        namespace: &namespace,
        secret: &secret,
        webhook: &webhook,
        hosts,
        days,
        renew_before_days: args.renew_before_days,
    };
    raygate::publish::publish(&client, &target).await?;
    Ok(exit::OK)
}

/// The cluster's NetworkPolicies, for `fix --kubeconfig`; none without it.
fn live_network_policies(
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Vec<std::sync::Arc<k8s_openapi::api::networking::v1::NetworkPolicy>>> {
    let Some(kubeconfig) = kubeconfig else {
        return Ok(Vec::new());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_from(config_from(kubeconfig).await?)?;
        let policies = raygate::audit::network_policies(&client, None, &mut |_| {}).await?;
        eprintln!(
            "raygate fix: {} NetworkPolicies in the cluster count as existing",
            policies.len()
        );
        Ok(policies)
    })
}

async fn config_from(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", kubeconfig.display()))
}

/// `serve` reaches the cluster only when told to or when it runs inside one.
async fn serve_client(kubeconfig: Option<&Path>) -> anyhow::Result<Option<kube::Client>> {
    let config = match kubeconfig {
        Some(path) => config_from(path).await?,
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => kube::Config::incluster()?,
        None => return Ok(None),
    };
    Ok(Some(kube::Client::try_from(config)?))
}

async fn audit(
    engine: &Engine,
    kubeconfig: Option<&Path>,
    namespace: Option<String>,
    all_namespaces: bool,
    output: raygate::report::Output,
    write: bool,
) -> anyhow::Result<u8> {
    let config = match kubeconfig {
        Some(path) => config_from(path).await?,
        None => kube::Config::infer().await?,
    };
    let namespace = match (namespace, all_namespaces) {
        (_, true) => None,
        (Some(ns), false) => Some(ns),
        (None, false) => Some(config.default_namespace.clone()),
    };
    let client = kube::Client::try_from(config)?;
    let mut progress = |p: raygate::audit::Progress<'_>| match p {
        raygate::audit::Progress::Page { what, listed } => {
            eprintln!("raygate audit: listed {listed} {what}")
        }
        raygate::audit::Progress::NotInstalled { kind } => {
            eprintln!("raygate audit: {kind} is not installed in this cluster; skipped")
        }
    };
    let scan = raygate::audit::scan(&client, engine, namespace.as_deref(), &mut progress).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    scan.report.write(output, engine.policy(), &mut out)?;
    if write {
        let reports = raygate::audit::policy_reports(
            &scan,
            engine.policy().name(),
            time::OffsetDateTime::now_utc(),
        );
        raygate::audit::write_reports(&client, &reports).await?;
        eprintln!(
            "raygate audit: wrote PolicyReport {} in {} namespace(s)",
            raygate::audit::REPORT_NAME,
            reports.len()
        );
    }
    Ok(if scan.report.denied() > 0 {
        exit::DENIED
    } else {
        exit::OK
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
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
    // Handlers first: a SIGTERM that arrives once the listener is up must drain, not kill.
    let signal = shutdown_signal();
    let running = raygate::server::start(config).await?;
    signal.await;
    tracing::info!("shutting down: unready now, draining in-flight requests");
    running.set_unready();
    tokio::time::sleep(delay).await;
    running.shutdown(Duration::from_secs(20));
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future completes on the first signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
