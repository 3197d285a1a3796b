//! `raygate serve --audit-interval`: the audit scan in the background, as metrics (and
//! PolicyReports when asked). Only the replica that holds the Lease runs it.

use std::time::{Duration, Instant};

use kube::Client;
use tokio::task::JoinHandle;

use super::live_engine::LiveEngine;
use crate::audit::{self, Progress, Scan};
use crate::leader::Leadership;
use crate::metrics::{AuditLabels, AuditMetrics};

/// A running audit loop.
pub struct AuditLoop {
    task: JoinHandle<()>,
}

impl AuditLoop {
    /// Starts the loop; it scans only while `leadership` says this replica leads. One replica
    /// audits and writes reports; admission never depends on the Lease.
    pub fn start(
        client: Client,
        interval: Duration,
        write_reports: bool,
        engine: LiveEngine,
        metrics: AuditMetrics,
        leadership: Leadership,
    ) -> AuditLoop {
        let periodic = PeriodicAudit {
            client,
            engine,
            metrics,
            leadership,
            write_reports,
        };
        AuditLoop {
            task: tokio::spawn(periodic.run(interval)),
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

struct PeriodicAudit {
    client: Client,
    engine: LiveEngine,
    metrics: AuditMetrics,
    leadership: Leadership,
    write_reports: bool,
}

impl PeriodicAudit {
    /// A failed scan is logged and counted, and retried next time.
    async fn run(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.wait_for_leadership().await;
            self.audit_once().await;
        }
    }

    /// Only the leader scans, writes reports and exports audit gauges (a sum over the
    /// replicas is then right). A replica that takes over scans at once.
    async fn wait_for_leadership(&self) {
        while !self.leadership.is_leader() {
            self.metrics.violations.clear();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn audit_once(&self) {
        let started = Instant::now();
        let mut progress = |p: Progress<'_>| {
            if let Progress::NotInstalled { kind } = p {
                tracing::debug!(kind, "not installed in this cluster; skipped");
            }
        };
        let engine = self.engine.current();
        let scan = match audit::scan(&self.client, &engine, None, &mut progress).await {
            Ok(scan) => scan,
            Err(error) => {
                self.metrics.failures.inc();
                tracing::warn!(%error, "background audit failed");
                return;
            }
        };
        self.export_violations(&scan);
        if self.write_reports {
            self.publish_reports(&scan, engine.policy().name()).await;
        }
        self.metrics.scans.inc();
        tracing::info!(
            objects = scan.report.results.len(),
            denied = scan.report.denied(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "background audit done"
        );
    }

    fn export_violations(&self, scan: &Scan) {
        let gauge = &self.metrics.violations;
        gauge.clear();
        for ((namespace, rule), count) in audit::violation_counts(scan) {
            gauge
                .get_or_create(&AuditLabels {
                    namespace,
                    rule: rule.as_str(),
                })
                .set(count);
        }
    }

    /// Writes a PolicyReport per namespace and deletes those of namespaces without Ray
    /// objects any more.
    async fn publish_reports(&self, scan: &Scan, policy_name: &str) {
        let reports = audit::policy_reports(scan, policy_name, time::OffsetDateTime::now_utc());
        if let Err(error) = audit::write_reports(&self.client, &reports).await {
            self.metrics.failures.inc();
            tracing::warn!(%error, "background audit could not write every PolicyReport");
        }
        match audit::prune_reports(&self.client, &reports).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(
                pruned,
                "deleted PolicyReports of namespaces without Ray objects"
            ),
            Err(error) => tracing::warn!(%error, "stale PolicyReports not pruned"),
        }
    }
}
