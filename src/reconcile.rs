//! One reconcile pass: read the swarm fresh, ask the core what to write, write it.
//!
//! Clusters are written concurrently and independently: each cluster's writes run as their own
//! task, at most one per cluster at a time, and a pass does not wait for a slow one (it waits a
//! moment, then moves on; the outcome is collected by a later pass). So a failing or slow cluster
//! holds up no other. A cluster whose writes failed waits out an exponential backoff with jitter
//! before its next attempt; success resets it. Writes that lose Swarm's optimistic lock ("update out of
//! sequence") re-read the object's version and retry at once, a few times.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reconcilers::config::{Config, ProxyKind};
use reconcilers::desired::{self, Environment, Observed};
use reconcilers::plan::{self, Action, Plan};
use tracing::{info, warn};

use crate::docker::{DockerClient, DockerError};
use crate::proxycheck::{ProxyChecker, Verdict};

/// Why a pass could not run at all (a cluster's own failure is reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the swarm failed: {0}")]
    Observe(#[source] DockerError),
    #[error("creating the operator network failed: {0}")]
    Network(#[source] DockerError),
}

/// The outcome of one pass.
#[derive(Debug, Default)]
pub struct PassReport {
    pub plan: Plan,
    /// Writes done.
    pub writes: usize,
    /// By extension: why its writes stopped.
    pub failures: BTreeMap<String, String>,
    /// Extensions skipped because they are backing off after a failure.
    pub backing_off: Vec<String>,
    /// Extensions skipped because their previous writes are still running.
    pub busy: Vec<String>,
    /// App services still starting tasks when the swarm was read.
    pub apps_settling: usize,
    /// Owned services not yet running their spec when the swarm was read.
    pub unsettled: Vec<String>,
}

/// Failure count and next allowed attempt, per cluster.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// What a cluster's write task did: writes done, and the error that stopped it.
type ClusterOutcome = (usize, Result<(), DockerError>);

/// How long a pass waits for its clusters' writes before leaving them running.
const PASS_WAIT: Duration = Duration::from_secs(2);

/// Runs passes; keeps the per-cluster backoff and write tasks between them.
pub struct Reconciler {
    docker: DockerClient,
    env: Environment,
    backoff: BTreeMap<String, Backoff>,
    checker: std::sync::Arc<ProxyChecker>,
    in_flight: BTreeMap<String, tokio::task::JoinHandle<ClusterOutcome>>,
}

/// `1 s · 2^(n-1)`, at most 60 s, times a jitter in `[0.8, 1.2)`.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(6));
    base.min(Duration::from_secs(60)).mul_f64(jitter.clamp(0.8, 1.2))
}

/// A cheap jitter source: the sub-second clock. Good enough to de-synchronise retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    0.8 + f64::from(nanos % 400_000_000) / 1_000_000_000.0
}

impl Reconciler {
    pub fn new(docker: DockerClient, env: Environment, checker: std::sync::Arc<ProxyChecker>) -> Self {
        Self { docker, env, backoff: BTreeMap::new(), checker, in_flight: BTreeMap::new() }
    }

    pub fn checker(&self) -> &std::sync::Arc<ProxyChecker> {
        &self.checker
    }

    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// Reads the swarm and computes the plan, writing nothing. A cluster whose new proxy config
    /// the real proxy binary rejects keeps its last good config: its writes are dropped from the
    /// plan and the reason is shown instead.
    pub async fn plan(&self, config: &Config) -> Result<(Observed, Plan), ReconcileError> {
        let observed = self.docker.observe(&managed_label()).await.map_err(ReconcileError::Observe)?;
        let desired = desired::desired_state(config, &observed, &self.env);
        let mut plan = plan::plan(&desired, &observed);
        for cluster in plan.clusters.values_mut() {
            let new_config = cluster.actions.iter().find_map(|a| match a {
                Action::CreateConfig(def) => Some(def),
                _ => None,
            });
            let Some(def) = new_config else { continue };
            let hash = def.labels.get(desired::LABEL_SPEC_HASH).cloned().unwrap_or_default();
            let kind = match def.labels.get(desired::LABEL_PROXY_KIND).map(String::as_str) {
                Some("haproxy") => ProxyKind::Haproxy,
                _ => ProxyKind::Nginx,
            };
            let text = String::from_utf8_lossy(&def.data);
            if let Verdict::Rejected(reason) = self.checker.check(kind, &hash, &text).await {
                cluster.actions.clear();
                cluster.conflicts.push(format!(
                    "the new proxy config is rejected by {kind} ({reason}); the proxy keeps its last good config"
                ));
            }
        }
        Ok((observed, plan))
    }

    /// One pass: observe, plan, write.
    pub async fn pass(&mut self, config: &Config) -> Result<PassReport, ReconcileError> {
        let (observed, plan) = self.plan(config).await?;
        let mut report = PassReport {
            apps_settling: plan::apps_settling(&observed),
            unsettled: plan::unsettled(&observed),
            ..PassReport::default()
        };
        for action in &plan.shared {
            execute(&self.docker, action).await.map_err(ReconcileError::Network)?;
            report.writes += 1;
        }
        self.collect(&mut report, Duration::ZERO).await;
        let now = Instant::now();
        for (name, cluster) in &plan.clusters {
            if cluster.actions.is_empty() {
                continue;
            }
            if self.in_flight.contains_key(name) {
                report.busy.push(name.clone());
                continue;
            }
            if self.backoff.get(name).is_some_and(|b| b.until > now) {
                report.backing_off.push(name.clone());
                continue;
            }
            let (docker, name_owned, actions) = (self.docker.clone(), name.clone(), cluster.actions.clone());
            let task = tokio::spawn(async move {
                let mut done = 0;
                for action in &actions {
                    info!(extension = %name_owned, "{action}");
                    if let Err(e) = execute(&docker, action).await {
                        return (done, Err(e));
                    }
                    done += 1;
                }
                (done, Ok(()))
            });
            self.in_flight.insert(name.clone(), task);
        }
        self.collect(&mut report, PASS_WAIT).await;
        for action in &plan.orphans {
            info!("{action} (its extension is gone)");
            match execute(&self.docker, action).await {
                Ok(()) => report.writes += 1,
                Err(e) => {
                    warn!("{action}: {e}");
                    report.failures.insert(format!("orphan: {action}"), e.to_string());
                }
            }
        }
        report.plan = plan;
        Ok(report)
    }

    /// When the earliest backing-off cluster may retry, if any is backing off.
    pub fn next_retry(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).min()
    }

    /// Waits for every cluster's writes to finish (for `apply`); reports them.
    pub async fn settle(&mut self) -> PassReport {
        let mut report = PassReport::default();
        self.collect(&mut report, Duration::MAX).await;
        report
    }

    /// Collects the outcomes of cluster write tasks that finish within `wait`: writes, failures
    /// and backoff.
    async fn collect(&mut self, report: &mut PassReport, wait: Duration) {
        let deadline = tokio::time::Instant::now().checked_add(wait);
        let names: Vec<String> = self.in_flight.keys().cloned().collect();
        for name in names {
            let finished = self.in_flight.get(&name).is_some_and(|t| t.is_finished());
            if !finished {
                let task = self.in_flight.get_mut(&name).expect("listed");
                let waited = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, task).await.ok(),
                    None => Some(task.await),
                };
                let Some(joined) = waited else { continue };
                self.in_flight.remove(&name);
                self.record(report, name, joined);
                continue;
            }
            let task = self.in_flight.remove(&name).expect("listed");
            let joined = task.await;
            self.record(report, name, joined);
        }
    }

    fn record(
        &mut self,
        report: &mut PassReport,
        name: String,
        joined: Result<ClusterOutcome, tokio::task::JoinError>,
    ) {
        let (done, result) = joined.unwrap_or_else(|e| {
            (
                0,
                Err(DockerError::Rejected {
                    operation: format!("write extension {name}"),
                    status: 0,
                    message: e.to_string(),
                }),
            )
        });
        report.writes += done;
        match result {
            Ok(()) => {
                self.backoff.remove(&name);
            }
            Err(e) => {
                let failures = self.backoff.get(&name).map_or(0, |b| b.failures) + 1;
                let delay = backoff_delay(failures, jitter());
                warn!(extension = %name, failures, retry_in = ?delay, "{e}");
                self.backoff.insert(name.clone(), Backoff { failures, until: Instant::now() + delay });
                report.failures.insert(name, e.to_string());
            }
        }
    }
}

/// Carries out one write.
async fn execute(d: &DockerClient, action: &Action) -> Result<(), DockerError> {
    match action {
        Action::CreateNetwork(def) => d.create_network(def).await.map(drop),
        Action::CreateConfig(def) => match d.create_config(def).await {
            // Created by an earlier, interrupted pass: same name, same content.
            Err(DockerError::Conflict { .. }) => Ok(()),
            other => other.map(drop),
        },
        Action::CreateService(def) => d.create_service(def).await.map(drop),
        Action::UpdateService { id, version, def, .. } => {
            let mut version = *version;
            let mut tries = 0;
            loop {
                match d.update_service(id, version, def).await {
                    Err(DockerError::OutOfSequence { .. }) if tries < 3 => {
                        tries += 1;
                        // Someone (often Swarm itself, finishing a rollout) moved the version.
                        let fresh = (|| d.inspect_service(id))
                            .retry(
                                ExponentialBuilder::default()
                                    .with_min_delay(Duration::from_millis(50))
                                    .with_max_times(3),
                            )
                            .when(DockerError::is_transient)
                            .await?;
                        let Some(fresh) = fresh else {
                            return Err(DockerError::NotFound { operation: format!("update service {}", def.name) });
                        };
                        version = fresh.version;
                    }
                    other => return other,
                }
            }
        }
        Action::DeleteService { id, .. } => ignore_missing(d.delete_service(id).await),
        Action::DeleteConfig { id, .. } => ignore_missing(d.delete_config(id).await),
    }
}

/// A delete of something already gone has done its job.
fn ignore_missing(result: Result<(), DockerError>) -> Result<(), DockerError> {
    match result {
        Err(DockerError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// The list filter for objects the operator owns.
pub fn managed_label() -> String {
    format!("{}={}", desired::LABEL_MANAGED_BY, desired::MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        assert_eq!(backoff_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff_delay(1, 0.5), Duration::from_millis(800), "jitter is clamped");
        let j = jitter();
        assert!((0.8..1.2).contains(&j));
    }
}
