//! Command-line definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

const CHECK_EXIT_CODES: &str = "\
Exit codes (for CI and Argo CD gates):
  0  nothing denied (with --mode audit: always, unless input is unusable)
  1  an object is denied: admission would refuse it
  2  unusable input: a file or folder that cannot be read or parsed (named with its line),
     a bad --policy, or bad arguments; nothing was judged
  3  nothing denied, but a --fail-on condition holds: `fill` (admission would fill in values
     the file lacks, so the file in git differs from what runs), `warn`, or `empty` (no Ray
     object in the inputs)
A gate that must only block what admission refuses checks for 1 and 2; one that keeps git
equal to the cluster adds --fail-on fill.";

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
    #[command(after_long_help = CHECK_EXIT_CODES, after_help = "Exit codes: 0 pass, 1 denied, 2 unusable input, 3 a --fail-on condition (see --help).")]
    Check {
        /// Files, folders (recursively *.yaml, *.yml, *.json) or - for stdin; repeat -f or
        /// list several after one.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// The namespace of objects that name none, as `kubectl apply -n` (or an Argo CD
        /// Application's destination) gives them; `default` when not given.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Override the policy's mode.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: OutputArg,
        /// Also fail (exit 3) when: `fill` an object is allowed only once filled in (the file
        /// in git still lacks the fill-ins; run `raygate fix`), `warn` a finding is a warning,
        /// `empty` the inputs hold no Ray object. Repeat or separate with commas.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "WHEN")]
        fail_on: Vec<FailOnArg>,
    },
    /// Write the manifests with what the plan can supply filled in; every other line, comment
    /// and quote stays as written.
    Fix {
        /// Files, folders (recursively *.yaml, *.yml, *.json) or - for stdin; repeat -f or
        /// list several after one. Without --in-place the result goes to stdout as one stream.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Rewrite the files instead of printing to stdout.
        #[arg(long)]
        in_place: bool,
        /// With --in-place, also rewrite a document whose fill-ins cannot be inserted into its
        /// text (the rewrite drops its comments and anchors).
        #[arg(long, requires = "in_place")]
        discard_comments: bool,
        /// Do not add a NetworkPolicy for a Ray cluster that no NetworkPolicy among the inputs
        /// selects (by default one precedes the cluster's document, so it is applied first).
        #[arg(long)]
        no_network_policies: bool,
        /// For a Ray cluster whose NetworkPolicies block what Ray needs, write the complete
        /// NetworkPolicy it needs next to the first such policy's file, as
        /// `<policy>.replacement.yaml`, for review. The policies themselves are never edited.
        #[arg(long, conflicts_with = "no_network_policies")]
        write_replacements: bool,
        /// Also count the NetworkPolicies of this cluster as existing: a Ray cluster one of
        /// them selects gets no new policy.
        #[arg(long, value_name = "FILE", conflicts_with = "no_network_policies")]
        kubeconfig: Option<PathBuf>,
    },
    /// Run the admission webhook (HTTPS) for kubectl apply, Argo CD dry runs and audit mode.
    Serve(ServeArgs),
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
        mode: Option<ModeArg>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: OutputArg,
        /// Create or update one wgpolicyk8s.io/v1alpha2 PolicyReport per namespace.
        #[arg(long)]
        write_reports: bool,
    },
    /// Write a CA and a serving certificate, and print the caBundle for webhook configurations;
    /// or, with --publish, keep or renew them in a Secret and set the webhooks' caBundle.
    Certs {
        #[arg(long, value_name = "DIR", required_unless_present = "publish")]
        out_dir: Option<PathBuf>,
        /// A DNS name or IP address the certificate serves (repeat).
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Print the command each Ray container runs and the `ray start` raygate reads from it.
    /// Reads JSON lines on stdin, `{"id", "role": "head"|"worker", "group": {...},
    /// "annotations": {...}}`, and writes one JSON line each (the Ray CLI differential test's
    /// interface, tests/runtime/ray_cli_oracle.py).
    RayStart {
        /// The Ray whose `ray start` options raygate reads the commands by.
        #[arg(long, value_name = "X.Y.Z", default_value = "2.60.0", value_parser = parse_ray_version)]
        ray_version: raygate::ray_version::RayVersion,
    },
    /// Validate a policy file and print the effective policy.
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

/// `certs --publish`: the Helm chart's self-signed hook (no shell, no kubectl image).
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Write the certificates into a Secret (kept while valid) and set the caBundle of the
    /// webhook configurations, with the in-cluster ServiceAccount or --kubeconfig.
    #[arg(long, conflicts_with = "out_dir", requires_all = ["namespace", "secret", "webhook"])]
    pub publish: bool,
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubernetes.io/tls Secret to keep or write.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// The name of the Validating- and MutatingWebhookConfiguration.
    #[arg(long, value_name = "NAME")]
    pub webhook: Option<String>,
    /// Renew a Secret this close to its expiry.
    #[arg(long, default_value_t = 30)]
    pub renew_before_days: u32,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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

/// `--mode`: the policy's [`raygate::Mode`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Audit,
}

impl From<ModeArg> for raygate::Mode {
    fn from(mode: ModeArg) -> raygate::Mode {
        match mode {
            ModeArg::Enforce => raygate::Mode::Enforce,
            ModeArg::Audit => raygate::Mode::Audit,
        }
    }
}

/// `--output`: a [`raygate::report::Output`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    Text,
    Json,
    /// SARIF 2.1.0, for code scanning (GitHub and others).
    Sarif,
    /// JUnit XML, one test case per Ray object (GitLab, Jenkins).
    Junit,
}

impl From<OutputArg> for raygate::report::Output {
    fn from(output: OutputArg) -> raygate::report::Output {
        use raygate::report::Output;
        match output {
            OutputArg::Text => Output::Text,
            OutputArg::Json => Output::Json,
            OutputArg::Sarif => Output::Sarif,
            OutputArg::Junit => Output::Junit,
        }
    }
}

/// `check --fail-on`: a [`raygate::commands::FailOn`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOnArg {
    /// An object is allowed only once filled in.
    Fill,
    /// A finding is a warning.
    Warn,
    /// No Ray object among the inputs.
    Empty,
}

impl From<FailOnArg> for raygate::commands::FailOn {
    fn from(fail_on: FailOnArg) -> raygate::commands::FailOn {
        use raygate::commands::FailOn;
        match fail_on {
            FailOnArg::Fill => FailOn::Fill,
            FailOnArg::Warn => FailOn::Warn,
            FailOnArg::Empty => FailOn::Empty,
        }
    }
}

/// `raygate serve`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM). Without it, a development CA and certificate are
    /// created under certs/ on first start.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (the API server's).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Prometheus metrics over plain HTTP.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Seconds to stay up, unready, after SIGTERM before draining (lets endpoints update).
    #[arg(long, default_value_t = 2)]
    pub shutdown_delay: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Readiness waits this long for the NetworkPolicy cache; after it, raygate serves
    /// and reports coverage as unverified rather than block Ray admission.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub cache_sync_timeout: Duration,
    /// Audit the whole cluster this often in the background (e.g. 10m) and export
    /// raygate_audit_violations. Needs cluster access.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub audit_interval: Option<Duration>,
    /// With --audit-interval, also write one PolicyReport per namespace.
    #[arg(long, requires = "audit_interval")]
    pub write_reports: bool,
    /// Write, for each Ray object whose Pods no NetworkPolicy selects, the NetworkPolicy
    /// `raygate fix` would (owned by the object, labelled app.kubernetes.io/managed-by:
    /// raygate). Runs on the Lease holder; never changes a policy it did not create. Needs
    /// cluster access and RBAC to create and patch NetworkPolicies.
    #[arg(long)]
    pub generate_network_policies: bool,
    /// Only in namespaces whose labels match this selector (e.g. `raygate.dev/netpol=generate`).
    #[arg(
        long,
        value_name = "SELECTOR",
        requires = "generate_network_policies",
        value_parser = non_empty
    )]
    pub generate_network_policies_namespaces: Option<String>,
    /// Look at every Ray object this often besides reacting to changes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, requires = "generate_network_policies")]
    pub generate_network_policies_resync: Duration,
}

fn non_empty(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("an empty selector: leave the flag out to cover every namespace".to_owned());
    }
    Ok(value.to_owned())
}

fn parse_ray_version(text: &str) -> Result<raygate::ray_version::RayVersion, String> {
    raygate::ray_version::parse_version(text)
        .ok_or_else(|| format!("{text:?} is not a Ray version X.Y.Z"))
}
