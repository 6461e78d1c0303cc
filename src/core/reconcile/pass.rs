//! One reconcile pass: read the swarm fresh, ask the core what to write (every new proxy config
//! checked, `culprit`), write it (`write`), as the replica that writes (`role`).
//!
//! Clusters are written concurrently and independently: each cluster's writes run as their own
//! task, at most one per cluster at a time, and a pass does not wait for a slow one (it waits a
//! moment, then moves on; the outcome is collected by a later pass). So a failing or slow cluster
//! holds up no other. A cluster whose writes failed waits out an exponential backoff with jitter
//! before its next attempt; success resets it. A write that loses Swarm's optimistic lock ("update
//! out of sequence") has its cluster planned again soon from a fresh read.
//!
//! Node labels (`[NodeLabels]`) are written first, one update per node, awaited: the clusters'
//! placement depends on them. A node whose update fails is reported and retried on the next
//! pass; it holds up no cluster. A node that changed since it was read is read again and
//! decided afresh (someone else's label on it stays). Drift, a hand edit of a managed field,
//! is logged at warn once per occurrence, reverted or only reported as `DriftPolicy` says.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use reconcilers::config::{Config, DriftPolicy};
use reconcilers::desired::Environment;
use reconcilers::leader;
use reconcilers::node_labels;
use reconcilers::observed::{NodeAvailability, Observed};
use reconcilers::observed::{ServiceFacts, TaskFacts};
use reconcilers::ownership::is_owned;
use reconcilers::plan::{self, Action, Plan};
use reconcilers::proxy::secret_blame;
use reconcilers::routes::Timestamp;
use tokio::time::Instant;
use tracing::{info, warn};

use super::culprit::{Culprits, Judge};
use super::role::{self, standing};
use super::write::{Writers, execute, write_node};
use crate::core::acme;
use crate::core::context::{Context, Replica};
use crate::core::delivery::Serving;
use crate::core::pass_report::PassReport;
use crate::swarm::{Swarm, SwarmError};

/// Why a pass could not run at all (a cluster's own failure is reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the swarm failed: {0}")]
    Observe(#[source] SwarmError),
    #[error("writing the operator network (or, for `start`, the statistics agent) failed: {0}")]
    Network(#[source] SwarmError),
}

/// How long a pass waits for its clusters' writes before leaving them running.
pub(super) const PASS_WAIT: Duration = Duration::from_secs(2);

/// Runs passes; keeps the config, the per-cluster backoff and the write tasks between them. A
/// config reload ([`Reconciler::reconfigure`]) swaps the config inside, so in-flight writes and
/// backoff survive it: there is never a second writer for a cluster.
pub struct Reconciler<S: Swarm> {
    pub(super) ctx: Context<S>,
    config: Config,
    env: Environment,
    /// The clusters' write tasks and their backoff.
    writers: Writers,
    /// The services found to make a proxy reject its config, until their labels change.
    culprits: Culprits,
    /// The drift lines of the last pass: each is logged when it first appears.
    drift_seen: BTreeSet<String>,
    /// The node warnings of the last pass (refused hostnames), likewise.
    pub(super) node_warnings_seen: BTreeSet<String>,
    /// By lowercase hostname, the node that reported it when last seen on one node only
    /// (`node_labels::remember_names`): this process's memory, gone with a restart.
    node_names: BTreeMap<String, String>,
    /// Who this process is among the cores that may run: exactly one writes
    /// (`reconcilers::leader`).
    identity: Replica,
    /// The role of the last pass, to log changes.
    role: Option<leader::Role>,
    /// Owned services with no running task and a task Swarm left waiting for a host port, by
    /// ID: since when.
    stranded: BTreeMap<String, Instant>,
    /// When each was last rescheduled.
    rescheduled: BTreeMap<String, Instant>,
    /// How long the last read of the swarm took, in microseconds (the engine's answers, and
    /// parsing them): a pass's own time is told apart from Docker's.
    read_us: std::sync::atomic::AtomicU64,
    /// By proxy service ID, for one whose tasks do not start: what its failed tasks printed
    /// ([`Reconciler::failed_proxy_logs`]).
    failed_logs: std::sync::Mutex<BTreeMap<String, FailedLogs>>,
}

/// The binary's fatal lines each failed task of a proxy service printed, by task ID
/// ([`Reconciler::failed_proxy_logs`]): each task's log is read once.
#[derive(Debug, Clone, Default)]
struct FailedLogs {
    lines: BTreeMap<String, String>,
    read_at: Option<Instant>,
}

/// Of a proxy service that does not start, the newest failed tasks read...
const FAILED_TASKS_READ: usize = 3;
/// ...of those created this recently (an older failure says nothing of today's spec)...
const FAILED_TASKS_WITHIN: Duration = Duration::from_secs(600);
/// ...and new ones read at most this often (a proxy restarting in a loop fails every few s).
const FAILED_LOGS_EVERY: Duration = Duration::from_secs(10);

/// A task waiting this long for a host port no task of its service holds is rescheduled...
pub(super) const STRANDED_AFTER: Duration = Duration::from_secs(10);
/// ...at most this often per service.
const RESCHEDULE_EVERY: Duration = Duration::from_secs(60);

impl<S: Swarm> Reconciler<S> {
    pub fn new(ctx: Context<S>, config: Config) -> Self {
        let env = ctx.environment(&config);
        Self {
            ctx,
            config,
            env,
            writers: Writers::default(),
            culprits: Culprits::default(),
            drift_seen: BTreeSet::new(),
            node_warnings_seen: BTreeSet::new(),
            node_names: BTreeMap::new(),
            identity: Replica::Lone,
            role: None,
            stranded: BTreeMap::new(),
            rescheduled: BTreeMap::new(),
            read_us: Default::default(),
            failed_logs: Default::default(),
        }
    }

    /// Makes this process one of the cores that may run (`run`, `apply`): it writes only while
    /// `reconcilers::leader::role` says so.
    pub fn as_replica(mut self, identity: Replica) -> Self {
        self.identity = identity;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Converges to `config` from the next pass on. Write tasks still running keep running and
    /// are collected as before; backoff is kept for extensions that remain.
    pub fn reconfigure(&mut self, config: Config) {
        self.env = self.ctx.environment(&config);
        self.writers.keep_extensions_of(&config);
        self.config = config;
    }

    /// Reads the swarm and computes the plan, writing nothing.
    ///
    /// Every new proxy config is checked by the real proxy binary first; the services that make
    /// it rejected are quarantined, and a rejection no service explains holds the cluster (see
    /// `culprit`).
    pub async fn plan(&self) -> Result<(Observed, Plan), ReconcileError> {
        self.plan_with_answers().await.map(|(observed, plan, _)| (observed, plan))
    }

    /// [`plan`](Self::plan), and the ACME answers the plan rendered.
    async fn plan_with_answers(&self) -> Result<(Observed, Plan, BTreeSet<String>), ReconcileError> {
        let reading = Instant::now();
        let observed = self.ctx.swarm.observe().await;
        let read = u64::try_from(reading.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.read_us.store(read, std::sync::atomic::Ordering::Relaxed);
        let mut observed = observed.map_err(ReconcileError::Observe)?;
        // The generations served and run: a new config's generation continues from them.
        observed.delivered = self.ctx.deliveries.known();
        observed.node_names.clone_from(&self.node_names);
        // ACME: the pass's time, the answers being published, the certificates read back.
        let answers = self.ctx.acme.answers();
        let tokens: BTreeSet<String> = answers.keys().cloned().collect();
        let certificates = self.ctx.acme.certificates(&observed, &self.ctx.deliveries.key());
        let now = Timestamp::from_unix(crate::core::acme::state::unix(SystemTime::now()) as i64);
        let env = self.env.clone().with_acme(now, answers, certificates);
        let failing = self.failed_proxy_logs(&observed).await;
        let judge = Judge {
            config: &self.config,
            env: &env,
            checker: &self.ctx.checker,
            deliveries: &self.ctx.deliveries,
            status: &self.ctx.status,
            culprits: &self.culprits,
            failing: &failing,
        };
        let plan = judge.checked_plan(&observed).await;
        Ok((observed, plan, tokens))
    }

    /// By extension, the binary's fatal lines its proxy's newest failed tasks printed, for each
    /// proxy service whose tasks do not start: its last update Swarm rolled back, or it runs no
    /// task (a new proxy service, or one Swarm keeps restarting). A config its tasks cannot start
    /// on because of a secret a tenant named (one holding no certificate) then quarantines those
    /// tenants (`culprit`), instead of keeping the cluster down. Only failed tasks the pass read
    /// (none: no read), on nodes not known to be down, each task's log read once, new ones at
    /// most every [`FAILED_LOGS_EVERY`]; only the binary's own lines are kept
    /// (`secret_blame::binary_lines`: the rest is the access log, which clients write).
    async fn failed_proxy_logs(&self, observed: &Observed) -> BTreeMap<String, String> {
        let now = crate::core::acme::state::unix(SystemTime::now()) as i64;
        let not_before = Timestamp::from_unix(now - FAILED_TASKS_WITHIN.as_secs() as i64);
        let node_down = |id: &str| observed.nodes.iter().any(|n| n.id == id && !n.ready);
        let mut failing = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (extension, ext) in &self.config.extensions {
            let Some(service) =
                observed.services.iter().find(|s| s.def.name == ext.proxy_service_name && is_owned(&s.def.labels))
            else {
                continue;
            };
            if service.rolled_back_from().is_none() && !proxy_tasks(observed, &ext.proxy_service_name).is_empty() {
                continue;
            }
            let mut failed: Vec<&TaskFacts> = observed
                .tasks
                .iter()
                .filter(|t| t.service_id == service.id && t.failed && !node_down(&t.node_id))
                .filter(|t| Timestamp::parse(&t.created) >= not_before)
                .collect();
            failed.sort_by(|a, b| b.created.cmp(&a.created));
            failed.truncate(FAILED_TASKS_READ);
            if failed.is_empty() {
                continue;
            }
            seen.insert(service.id.clone());
            let mut logs = self.failed_logs.lock().expect("failed logs lock").remove(&service.id).unwrap_or_default();
            logs.lines.retain(|id, _| failed.iter().any(|t| t.id == *id));
            let unread: Vec<&str> =
                failed.iter().map(|t| t.id.as_str()).filter(|id| !logs.lines.contains_key(*id)).collect();
            if !unread.is_empty() && logs.read_at.is_none_or(|at| at.elapsed() >= FAILED_LOGS_EVERY) {
                logs.read_at = Some(Instant::now());
                for id in unread {
                    // A log that cannot be read (a driver the API cannot read back) is not read
                    // again: its task stays silent.
                    let text = self.ctx.swarm.task_logs(id).await.unwrap_or_else(|e| {
                        warn!(extension = %extension, task = %id, "reading why a proxy task did not start failed: {e}");
                        String::new()
                    });
                    logs.lines.insert(id.to_owned(), secret_blame::binary_lines(ext.proxy_kind, &text));
                }
            }
            let text: String = failed.iter().filter_map(|t| logs.lines.get(&t.id)).map(String::as_str).collect();
            if !text.trim().is_empty() {
                failing.insert(extension.clone(), text);
            }
            self.failed_logs.lock().expect("failed logs lock").insert(service.id.clone(), logs);
        }
        self.failed_logs.lock().expect("failed logs lock").retain(|id, _| seen.contains(id));
        failing
    }

    /// How long the last read of the swarm took.
    pub fn last_read(&self) -> Duration {
        Duration::from_micros(self.read_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// One pass: observe, plan, write.
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let (observed, plan, tokens) = self.plan_with_answers().await?;
        self.node_names = node_labels::remember_names(&observed.node_names, &self.config.node_labels, &observed.nodes);
        let mut report = PassReport {
            apps_settling: plan::apps_settling(&observed),
            unsettled: plan::unsettled(&observed),
            ..PassReport::default()
        };
        let role = role::role(&self.identity, self.ctx.core_service.as_deref(), &observed);
        if self.role.as_ref() != Some(&role) {
            match &role {
                leader::Role::Active => info!("active: this replica writes"),
                leader::Role::Standby { leader, why } => {
                    info!(leader = leader.as_deref().unwrap_or("none yet"), "standby: {}", standing(*why));
                }
            }
            self.role = Some(role.clone());
        }
        if let leader::Role::Standby { leader, .. } = role {
            // Read-only, and serving no config: extensions and their reports go to the writer.
            // Writes it started while it wrote stop here (its creates and deletes carry no
            // version to lose on).
            self.writers.abort_all();
            let leader = leader.unwrap_or_default();
            self.ctx.deliveries.set_serving(Serving::Standby(leader.clone()));
            report.standby = Some(leader);
            report.plan = plan;
            return Ok(report);
        }
        self.ctx.deliveries.set_serving(Serving::Writer);
        for action in &plan.shared {
            execute(&self.ctx.swarm, action).await.map_err(ReconcileError::Network)?;
            report.writes += 1;
        }
        self.log_drift(&plan);
        self.log_node_warnings(&plan);
        // Node labels before the clusters: where their proxies may run depends on them.
        for action in &plan.nodes {
            info!("{action}");
            match write_node(&self.ctx.swarm, &self.config, action, &observed).await {
                Ok(()) => report.writes += 1,
                Err(e) => {
                    let Action::UpdateNode { hostname, .. } = action else { continue };
                    warn!(node = %hostname, "{action}: {e}");
                    report.failures.insert(format!("node {hostname}"), e.to_string());
                }
            }
        }
        self.writers.collect(&mut report, Duration::ZERO).await;
        self.reschedule_stranded(&observed, &mut report).await;
        self.serve_deliveries(&observed, &plan);
        let now = Instant::now();
        for (name, cluster) in &plan.clusters {
            if cluster.actions.is_empty() {
                continue;
            }
            if self.writers.is_writing(name) {
                report.busy.push(name.clone());
                continue;
            }
            if self.writers.is_backing_off(name, now) {
                report.backing_off.push(name.clone());
                continue;
            }
            self.writers.start(self.ctx.swarm.clone(), name, cluster.actions.clone());
        }
        self.writers.collect(&mut report, PASS_WAIT).await;
        // ACME: which clusters serve the answers rendered; retired certificates nobody names.
        let converged = self.acme_converged(&observed, &plan, &report);
        self.ctx.acme.after_plan(&observed, &plan, &tokens, &converged, SystemTime::now());
        report.writes += acme::retire::retire_unused(&self.ctx.swarm, &observed, &plan.acme_retire).await;
        // The statistics agent serves plug-ins, not routes: its failure is reported, retried on
        // the next pass, and holds up nothing.
        for action in &plan.agent {
            info!("{action} (statistics agent)");
            match execute(&self.ctx.swarm, action).await {
                Ok(()) => report.writes += 1,
                Err(e) => {
                    warn!("{action}: {e}");
                    report.failures.insert("statistics agent".to_owned(), e.to_string());
                }
            }
        }
        for action in &plan.orphans {
            info!("{action} (its extension is gone)");
            match execute(&self.ctx.swarm, action).await {
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

    /// Logs each drift line of the plan the first time it appears (it stays in the plan while
    /// a write is pending, and for good with `DriftPolicy = "report"`).
    fn log_drift(&mut self, plan: &Plan) {
        let lines: BTreeSet<String> = plan.drift().into_iter().collect();
        for line in lines.difference(&self.drift_seen) {
            match plan.drift_policy {
                DriftPolicy::Revert => warn!("drift: {line}; reverted"),
                DriftPolicy::Report => warn!("drift: {line}; not reverted (DriftPolicy = \"report\")"),
            }
        }
        self.drift_seen = lines;
    }

    /// Logs each refused hostname of the plan the first time it appears.
    fn log_node_warnings(&mut self, plan: &Plan) {
        let lines: BTreeSet<String> = plan.node_warnings.iter().cloned().collect();
        for line in lines.difference(&self.node_warnings_seen) {
            warn!("node labels: {line}");
        }
        self.node_warnings_seen = lines;
    }

    /// Swarm's scheduler can leave a task pending on a host-mode port it believes in use and not
    /// look at it again once the port is freed (seen on the lab when two proxies swap nodes, or
    /// a proxy replaces a removed one on the same port), or, after a Raft election during the
    /// service's update, with every node "not available for new tasks" to the new leader's
    /// scheduler although one fits (moby/moby#36699): the proxy then never runs. An owned
    /// service with no running task whose task has waited so for [`STRANDED_AFTER`] is
    /// rescheduled (`docker service update --force`: no task of it serves, so nothing is
    /// interrupted), at most every [`RESCHEDULE_EVERY`], and never while its cluster writes.
    async fn reschedule_stranded(&mut self, observed: &Observed, report: &mut PassReport) {
        let now = Instant::now();
        // No node can take a task (all drained or down): nothing a reschedule could change.
        if !observed.nodes.iter().any(|n| n.ready && n.availability == NodeAvailability::Active) {
            self.stranded.clear();
            return;
        }
        let stranded: Vec<&ServiceFacts> = observed
            .services
            .iter()
            .filter(|s| reconcilers::ownership::is_owned(&s.def.labels))
            .filter(|s| !observed.tasks.iter().any(|t| t.service_id == s.id && t.running))
            .filter(|s| observed.tasks.iter().any(|t| t.service_id == s.id && t.stuck_pending))
            .collect();
        self.stranded.retain(|id, _| stranded.iter().any(|s| s.id == *id));
        for service in stranded {
            let since = *self.stranded.entry(service.id.clone()).or_insert(now);
            let writing = service
                .def
                .labels
                .get(reconcilers::ownership::LABEL_EXTENSION)
                .is_some_and(|e| self.writers.is_writing(e));
            let due = now.duration_since(since) >= STRANDED_AFTER
                && self.rescheduled.get(&service.id).is_none_or(|t| now.duration_since(*t) >= RESCHEDULE_EVERY);
            if writing || !due {
                continue;
            }
            warn!(
                service = %service.def.name,
                "Swarm left its task pending where its scheduler does not look again (a host port it reports in use, or no node available after an election), and no task of it runs: rescheduling it"
            );
            self.rescheduled.insert(service.id.clone(), now);
            match self.ctx.swarm.reschedule(&service.id).await {
                Ok(()) => report.writes += 1,
                Err(e) => warn!(service = %service.def.name, "reschedule: {e}"),
            }
        }
    }

    /// Serves each hitless cluster's accepted config to its extension (before any write: the
    /// label recording it is bookkeeping, the tasks need only the config), and tells it which
    /// proxy tasks run where: only they may report, and reports of tasks gone are forgotten.
    fn serve_deliveries(&self, observed: &Observed, plan: &Plan) {
        for (name, cluster) in &plan.clusters {
            // Which tasks may report: also while the cluster is held (no delivery), so that
            // the reports of tasks started meanwhile are taken.
            if let Some(ext) = self.config.extensions.get(name).filter(|e| e.hitless_service_update) {
                self.ctx.deliveries.set_tasks(name, proxy_tasks(observed, &ext.proxy_service_name));
            }
            if let Some(delivery) = &cluster.delivery {
                self.ctx.deliveries.publish(delivery);
            }
        }
    }

    /// The clusters wanting ACME certificates whose proxies run the config this pass planned
    /// (so they serve the answers it rendered): nothing left to write, and a hitless cluster's
    /// running tasks all reported its delivery; a rolling one's service settled.
    fn acme_converged(&self, observed: &Observed, plan: &Plan, report: &PassReport) -> BTreeSet<String> {
        plan.clusters
            .iter()
            .filter(|(_, cluster)| cluster.acme.wanted() && cluster.actions.is_empty())
            .filter(|(name, cluster)| {
                let Some(ext) = self.config.extensions.get(*name) else { return false };
                if ext.hitless_service_update {
                    let tasks: BTreeSet<String> = proxy_tasks(observed, &ext.proxy_service_name).into_keys().collect();
                    cluster.delivery.as_ref().is_some_and(|d| {
                        !tasks.is_empty() && self.ctx.deliveries.pending(name, &d.hash, &tasks).is_empty()
                    })
                } else {
                    let prefix = format!("{}:", ext.proxy_service_name);
                    observed.services.iter().any(|s| s.def.name == ext.proxy_service_name)
                        && !report.unsettled.iter().any(|u| u.starts_with(&prefix))
                }
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// When the earliest backing-off cluster may retry.
    #[cfg(test)]
    pub fn next_retry(&self) -> Option<Instant> {
        self.writers.next_retry()
    }

    /// When the earliest backing-off cluster may retry, among retry times later than `since`
    /// (the start of the last pass: an earlier one was that pass's to take).
    pub fn next_retry_after(&self, since: Instant) -> Option<Instant> {
        self.writers.next_retry_after(since)
    }

    /// Extensions whose writes are still running.
    pub fn busy(&self) -> Vec<String> {
        self.writers.busy()
    }

    /// Waits for every cluster's writes to finish (for `apply`); reports them.
    pub async fn settle(&mut self) -> PassReport {
        let mut report = PassReport::default();
        self.writers.collect(&mut report, Duration::MAX).await;
        report
    }
}

/// The running tasks of the service named `service`: task ID → node ID.
fn proxy_tasks(observed: &Observed, service: &str) -> BTreeMap<String, String> {
    let Some(id) = observed.services.iter().find(|s| s.def.name == service).map(|s| &s.id) else {
        return BTreeMap::new();
    };
    observed
        .tasks
        .iter()
        .filter(|t| t.running && t.service_id == *id)
        .map(|t| (t.id.clone(), t.node_id.clone()))
        .collect()
}
