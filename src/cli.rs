//! Command-line definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raygate::Mode;
use raygate::commands::Output;

#[derive(Debug, Parser)]
#[command(
    name = "raygate",
    version,
    about = "Hold Ray clusters on Kubernetes to the platform plan"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Platform policy file (default: the built-in policies/ray-platform.yaml).
    #[arg(long, value_name = "FILE", global = true)]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests against the policy, as admission would (fill in, then validate).
    Check {
        /// A file, a folder (recursively *.yaml, *.yml, *.json) or - for stdin.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Override the policy's mode.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Write the manifests with what the plan can supply filled in.
    Fix {
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Rewrite the files instead of printing to stdout.
        #[arg(long)]
        in_place: bool,
        /// With --in-place, also rewrite documents whose comments would be lost.
        #[arg(long, requires = "in_place")]
        discard_comments: bool,
    },
    /// Run the admission webhook (HTTPS) for kubectl apply, Argo CD dry runs and audit mode.
    Serve {
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Serving certificate (PEM). Without it, a development CA and certificate are
        /// created under certs/ on first start.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates signed by this CA (the API server's).
        #[arg(long, value_name = "FILE")]
        client_ca: Option<PathBuf>,
        /// Prometheus metrics over plain HTTP.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
        metrics_listen: SocketAddr,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Seconds to stay up, unready, after SIGTERM before draining (lets endpoints update).
        #[arg(long, default_value_t = 2)]
        shutdown_delay: u64,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Readiness waits this long for the NetworkPolicy cache; after it, raygate serves
        /// and reports coverage as unverified rather than block Ray admission.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
        cache_sync_timeout: Duration,
        /// Audit the whole cluster this often in the background (e.g. 10m) and export
        /// raygate_audit_violations. Needs cluster access.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        audit_interval: Option<Duration>,
        /// With --audit-interval, also write one PolicyReport per namespace.
        #[arg(long, requires = "audit_interval")]
        write_reports: bool,
    },
    /// Evaluate what a cluster already runs: Ray objects, Ray Pods and NetworkPolicies.
    Audit {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Only this namespace (default: the kubeconfig context's namespace).
        #[arg(short, long, value_name = "NS", conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// Create or update one wgpolicyk8s.io/v1alpha2 PolicyReport per namespace.
        #[arg(long)]
        write_reports: bool,
    },
    /// Write a CA and a serving certificate, and print the caBundle for webhook configurations.
    Certs {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// A DNS name or IP address the certificate serves (repeat).
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Validate a policy file and print the effective policy.
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Kubeconfig to reach the cluster. `serve` otherwise uses its in-cluster ServiceAccount
    /// when it has one, and runs without cluster access when not; `audit` otherwise finds
    /// the cluster as kubectl does.
    #[arg(long, value_name = "FILE", env = "RAYGATE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
