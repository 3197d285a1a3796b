//! The policy reloader: exports which policy is in force, and swaps in each valid change of
//! the policy file.

use std::path::PathBuf;

use super::error::Error;
use super::file_watch::watch_directory_of;
use super::live_engine::LiveEngine;
use crate::engine::Engine;
use crate::metrics::{PolicyLabels, PolicyMetrics, ReloadLabels};
use crate::policy::{Mode, Policy};

pub struct PolicyFile {
    pub path: PathBuf,
    /// `--mode`, which overrides the file's own mode on every reload too.
    pub mode: Option<Mode>,
}

/// A running policy reloader; it stops watching when dropped.
pub struct PolicyReloader {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl PolicyReloader {
    /// Exports the policy in force, and watches `file` (none for the built-in policy).
    pub fn start(
        file: Option<PolicyFile>,
        engine: &LiveEngine,
        metrics: PolicyMetrics,
    ) -> Result<PolicyReloader, Error> {
        show_policy(&metrics, &engine.current());
        let watcher = match file {
            Some(file) => {
                let path = file.path.clone();
                let engine = engine.clone();
                Some(watch_directory_of(&path, move || {
                    reload(&file, &engine, &metrics)
                })?)
            }
            None => None,
        };
        Ok(PolicyReloader { _watcher: watcher })
    }
}

fn show_policy(metrics: &PolicyMetrics, engine: &Engine) {
    metrics.info.clear();
    let policy = engine.policy();
    metrics
        .info
        .get_or_create(&PolicyLabels {
            name: policy.name().to_owned(),
            version: policy.version(),
        })
        .set(1);
}

/// Swaps in the file's policy if it is valid and new. An invalid one is logged with its file
/// and field, counted, and the policy in force keeps serving.
fn reload(file: &PolicyFile, engine: &LiveEngine, metrics: &PolicyMetrics) {
    let count = |result: &str| {
        metrics
            .reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    };
    match Policy::load(&file.path) {
        Ok(policy) => {
            let policy = match file.mode {
                Some(mode) => policy.with_mode(mode),
                None => policy,
            };
            let version = policy.version();
            if version == engine.current().policy().version() {
                return;
            }
            let new_engine = Engine::new(policy);
            show_policy(metrics, &new_engine);
            engine.replace(new_engine);
            count("applied");
            tracing::info!(file = %file.path.display(), %version, "applied the new policy");
        }
        Err(error) => {
            count("rejected");
            tracing::error!(%error, "rejected the changed policy; the policy in force keeps serving");
        }
    }
}
