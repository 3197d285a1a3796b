use std::process::ExitCode;

use clap::Parser;
use raygate::commands::{self, FixOptions, exit};
use raygate::{Engine, Policy};

mod cli;
use cli::{Cli, Command, PolicyArgs};

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
        Command::Policy { policy } => {
            let policy = load_policy(&policy)?;
            print!("{}", policy.to_yaml());
            exit::OK
        }
    })
}
