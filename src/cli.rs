//! Command-line definitions only.

use std::path::PathBuf;

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
    /// Validate a policy file and print the effective policy.
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}
