//! The writes of a pass: one write ([`execute`]), the clusters' write tasks with their backoff
//! ([`Writers`]), and node label updates, decided afresh when the node changed since it was read
//! ([`write_node`]).
//!
//! Each cluster's writes run as their own task, at most one per cluster at a time; a pass
//! collects what finished and leaves the rest running. A cluster whose writes failed waits out
//! [`retry::AFTER_FAILURE`] (with jitter) before its next attempt; one whose write lost Swarm's
//! optimistic lock, or found its name taken, is planned again soon from a fresh read, never
//! rewritten blind. Success resets both.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::Retryable;
use reconcilers::config::Config;
use reconcilers::node_labels;
use reconcilers::observed::Observed;
use reconcilers::plan::Action;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::core::pass_report::PassReport;
use crate::retry::{self, Backoff};
use crate::swarm::{Swarm, SwarmError};

/// Re-reads of a node whose update lost the lock: from 50 ms, doubling, three at most.
const REREAD: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(60));
/// A node update that lost the lock is decided afresh and sent again at most this many times.
const NODE_TRIES: u32 = 3;

/// Failure and conflict counts and next allowed attempt, per cluster.
#[derive(Debug, Clone, Copy)]
struct ClusterBackoff {
    failures: u32,
    /// Writes refused in a row because the object changed since it was read: the cluster is
    /// planned again soon (from 250 ms, doubling), not after a failure's backoff.
    conflicts: u32,
    until: Instant,
}

/// The delay before re-planning a cluster after `conflicts` refused writes in a row.
fn conflict_delay(conflicts: u32, jitter: f64) -> Duration {
    (retry::AFTER_FAILURE.jittered(conflicts, jitter) / 4).max(Duration::from_millis(100))
}

/// Why a cluster's write task stopped early.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("the write task for extension {extension} ended abnormally: {reason}")]
    Aborted { extension: String, reason: String },
}

/// What a cluster's write task did: writes done, and the error that stopped it.
type ClusterOutcome = (usize, Result<(), WriteError>);

/// The clusters' write tasks and their backoff, kept between passes (and across config reloads:
/// there is never a second writer for a cluster).
#[derive(Debug, Default)]
pub(super) struct Writers {
    backoff: BTreeMap<String, ClusterBackoff>,
    in_flight: BTreeMap<String, JoinHandle<ClusterOutcome>>,
}

impl Writers {
    /// Whether the cluster's previous writes still run.
    pub(super) fn is_writing(&self, name: &str) -> bool {
        self.in_flight.contains_key(name)
    }

    /// Whether the cluster waits out a backoff at `now`.
    pub(super) fn is_backing_off(&self, name: &str, now: Instant) -> bool {
        self.backoff.get(name).is_some_and(|b| b.until > now)
    }

    /// Starts the cluster's writes, one after the other, on a task of their own.
    pub(super) fn start<S: Swarm>(&mut self, swarm: S, name: &str, actions: Vec<Action>) {
        let extension = name.to_owned();
        let task = tokio::spawn(async move {
            let mut done = 0;
            for action in &actions {
                info!(extension = %extension, "{action}");
                if let Err(e) = execute(&swarm, action).await {
                    return (done, Err(e.into()));
                }
                done += 1;
            }
            (done, Ok(()))
        });
        self.in_flight.insert(name.to_owned(), task);
    }

    /// Stops every running write task (a replica that became a standby).
    pub(super) fn abort_all(&mut self) {
        for (_, task) in std::mem::take(&mut self.in_flight) {
            task.abort();
        }
    }

    /// Forgets the backoff of extensions `config` no longer has.
    pub(super) fn keep_extensions_of(&mut self, config: &Config) {
        self.backoff.retain(|name, _| config.extensions.contains_key(name));
    }

    /// When the earliest backing-off cluster may retry.
    #[cfg(test)]
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).min()
    }

    /// When the earliest backing-off cluster may retry, among retry times later than `since`.
    pub(super) fn next_retry_after(&self, since: Instant) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).filter(|until| *until > since).min()
    }

    /// Extensions whose writes are still running.
    pub(super) fn busy(&self) -> Vec<String> {
        self.in_flight.keys().cloned().collect()
    }

    /// Collects the outcomes of cluster write tasks that finish within `wait`: writes, failures
    /// and backoff.
    pub(super) async fn collect(&mut self, report: &mut PassReport, wait: Duration) {
        let deadline = Instant::now().checked_add(wait);
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

    fn record(&mut self, report: &mut PassReport, name: String, joined: Result<ClusterOutcome, JoinError>) {
        let (done, result) =
            joined.unwrap_or_else(|e| (0, Err(WriteError::Aborted { extension: name.clone(), reason: e.to_string() })));
        report.writes += done;
        match result {
            Ok(()) => {
                self.backoff.remove(&name);
            }
            // Someone wrote since the read: another replica (an object of the same name
            // created, a version moved), a person, Swarm finishing a rollout. Plan again.
            Err(WriteError::Swarm(SwarmError::OutOfSequence { operation } | SwarmError::Conflict { operation })) => {
                let before = self.backoff.get(&name).copied();
                let conflicts = before.map_or(0, |b| b.conflicts) + 1;
                let delay = conflict_delay(conflicts, retry::jitter());
                info!(extension = %name, conflicts, replan_in = ?delay, "{operation}: changed since it was read; planning it again from a fresh read");
                let failures = before.map_or(0, |b| b.failures);
                self.backoff
                    .insert(name.clone(), ClusterBackoff { failures, conflicts, until: Instant::now() + delay });
                report.conflicts.push(name);
            }
            Err(e) => {
                let failures = self.backoff.get(&name).map_or(0, |b| b.failures) + 1;
                let delay = retry::AFTER_FAILURE.jittered(failures, retry::jitter());
                warn!(extension = %name, failures, retry_in = ?delay, "{e}");
                self.backoff
                    .insert(name.clone(), ClusterBackoff { failures, conflicts: 0, until: Instant::now() + delay });
                report.failures.insert(name, e.to_string());
            }
        }
    }
}

/// Carries out one write.
pub(super) async fn execute<S: Swarm>(swarm: &S, action: &Action) -> Result<(), SwarmError> {
    match action {
        Action::CreateNetwork(def) => swarm.create_network(def).await,
        // A name already taken is not adopted: `plan` adopts only the operator's own configs
        // with the same content, and a clash here is someone else's config.
        Action::CreateConfig(def) => swarm.create_config(def).await,
        Action::CreateService(def) => swarm.create_service(def).await,
        // Carries the version it was planned from: when someone moved it since (another
        // replica, a person, Swarm finishing a rollout), Swarm refuses it ("update out of
        // sequence") and the cluster is planned afresh from a new read, never rewritten blind.
        Action::UpdateService { id, version, def, .. } => swarm.update_service(id, *version, def).await,
        Action::DeleteService { id, .. } => ignore_missing(swarm.delete_service(id).await),
        Action::DeleteConfig { id, .. } => ignore_missing(swarm.delete_config(id).await),
        Action::CreateSecret(def) => swarm.create_secret(def).await,
        Action::DeleteSecret { name } => ignore_missing(swarm.delete_secret(name).await),
        // The pass writes nodes with `write_node` (it re-decides on a conflict).
        Action::UpdateNode { id, version, labels, .. } => swarm.update_node(id, *version, labels).await,
    }
}

/// One node label update. When the node changed since it was read ("update out of
/// sequence"), it is read again and its labels decided afresh from `config` (with the pass's
/// other nodes, so a refused hostname stays refused), so a label someone else wrote meanwhile is
/// kept; a few times at most.
pub(super) async fn write_node<S: Swarm>(
    swarm: &S,
    config: &Config,
    action: &Action,
    observed: &Observed,
) -> Result<(), SwarmError> {
    let mut action = action.clone();
    let mut tries = 0;
    loop {
        let Action::UpdateNode { id, version, labels, hostname, .. } = &action else {
            return execute(swarm, &action).await;
        };
        match swarm.update_node(id, *version, labels).await {
            Err(SwarmError::OutOfSequence { .. }) if tries < NODE_TRIES => {
                tries += 1;
                let fresh = (|| swarm.inspect_node(id)).retry(REREAD.retries(3)).when(SwarmError::is_transient).await?;
                let Some(fresh) = fresh else {
                    return Err(SwarmError::NotFound { operation: format!("update node {hostname}") });
                };
                let mut nodes = observed.nodes.clone();
                nodes.retain(|n| n.id != fresh.id);
                nodes.push(fresh.clone());
                let desired = node_labels::desired(&config.node_labels, &nodes, &observed.node_names);
                match node_labels::decide(&fresh, &desired, config.drift_policy).update {
                    Some(next) => action = Action::from(next),
                    // Already as declared (or held by the drift policy): nothing left to do.
                    None => return Ok(()),
                }
            }
            other => return other,
        }
    }
}

/// A delete of something already gone has done its job.
fn ignore_missing(result: Result<(), SwarmError>) -> Result<(), SwarmError> {
    match result {
        Err(SwarmError::NotFound { .. }) => Ok(()),
        other => other,
    }
}
