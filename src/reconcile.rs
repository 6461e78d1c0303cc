//! One reconcile pass: read the swarm fresh, ask the core what to write, write it.
//!
//! Clusters are written concurrently and independently: each cluster's writes run as their own
//! task, at most one per cluster at a time, and a pass does not wait for a slow one (it waits a
//! moment, then moves on; the outcome is collected by a later pass). So a failing or slow cluster
//! holds up no other. A cluster whose writes failed waits out an exponential backoff with jitter
//! before its next attempt; success resets it. Writes that lose Swarm's optimistic lock ("update out of
//! sequence") re-read the object's version and retry at once, a few times.
//!
//! Node labels (`[NodeLabels]`) are written first, one update per node, awaited: the clusters'
//! placement depends on them. A node whose update fails is reported and retried on the next
//! pass; it holds up no cluster. A node that changed since it was read is read again and
//! decided afresh (someone else's label on it stays). Drift, a hand edit of a managed field,
//! is logged at warn once per occurrence, reverted or only reported as `DriftPolicy` says.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reconcilers::config::{Config, DriftPolicy, ProxyKind};
use reconcilers::desired::{self, Environment};
use reconcilers::leader;
use reconcilers::node_labels;
use reconcilers::observed::{Observed, ServiceFacts, TaskFacts};
use reconcilers::ownership;
use reconcilers::plan::{self, Action, Plan};
use reconcilers::routes::{RouteTable, Timestamp};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::context::{Context, Replica};
use crate::delivery::Serving;
use crate::docker::DockerError;
use crate::proxycheck::Verdict;
use crate::swarm::Swarm;

/// Why a pass could not run at all (a cluster's own failure is reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the swarm failed: {0}")]
    Observe(#[source] DockerError),
    #[error("writing the operator network (or, for `start`, the statistics agent) failed: {0}")]
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
    /// Extensions whose write was refused because an object changed since it was read: they
    /// are planned again from a fresh read shortly.
    pub conflicts: Vec<String>,
    /// App services still starting tasks when the swarm was read (their IDs).
    pub apps_settling: Vec<String>,
    /// This replica is a standby and wrote nothing: the leader's hostname ("" while Raft elects).
    pub standby: Option<String>,
    /// Owned services not yet running their spec when the swarm was read.
    pub unsettled: Vec<String>,
}

/// Failure and conflict counts and next allowed attempt, per cluster.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    /// Writes refused in a row because the object changed since it was read: the cluster is
    /// planned again soon (from 250 ms, doubling), not after a failure's backoff.
    conflicts: u32,
    until: Instant,
}

/// The delay before re-planning a cluster after `conflicts` refused writes in a row.
fn conflict_delay(conflicts: u32, jitter: f64) -> Duration {
    (backoff_delay(conflicts, jitter) / 4).max(Duration::from_millis(100))
}

/// Why a cluster's write task stopped early.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the write task for extension {extension} ended abnormally: {reason}")]
    Aborted { extension: String, reason: String },
}

/// What a cluster's write task did: writes done, and the error that stopped it.
type ClusterOutcome = (usize, Result<(), WriteError>);

/// How long a pass waits for its clusters' writes before leaving them running.
const PASS_WAIT: Duration = Duration::from_secs(2);
/// At most this many services are found responsible for one rejected config per search...
const MAX_CULPRITS: usize = 3;
/// ...and at most this many searches run in one pass; what is still rejected then is held.
const MAX_CULPRIT_ROUNDS: usize = 3;

/// A service found responsible for a config the proxy binary rejects.
#[derive(Debug, Clone)]
struct Culprit {
    /// Its routing labels when it was found: a change of them clears it.
    fingerprint: String,
    reason: String,
}

/// What a service's routes depend on in its labels.
fn route_fingerprint(service: &ServiceFacts) -> String {
    let labels: Vec<(&String, &String)> =
        service.def.labels.iter().filter(|(k, _)| k.starts_with(reconcilers::labels::LABEL_PREFIX)).collect();
    format!("{}:{labels:?}", service.id)
}

/// Runs passes; keeps the config, the per-cluster backoff and the write tasks between them. A
/// config reload ([`Reconciler::reconfigure`]) swaps the config inside, so in-flight writes and
/// backoff survive it: there is never a second writer for a cluster.
pub struct Reconciler<S: Swarm> {
    ctx: Context<S>,
    config: Config,
    env: Environment,
    backoff: BTreeMap<String, Backoff>,
    in_flight: BTreeMap<String, tokio::task::JoinHandle<ClusterOutcome>>,
    /// By service name. `plan` takes `&self` (the `plan` command), hence the lock.
    culprits: std::sync::Mutex<BTreeMap<String, Culprit>>,
    /// The drift lines of the last pass: each is logged when it first appears.
    drift_seen: BTreeSet<String>,
    /// The node warnings of the last pass (refused hostnames), likewise.
    node_warnings_seen: BTreeSet<String>,
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
}

/// A task waiting this long for a host port no task of its service holds is rescheduled...
const STRANDED_AFTER: Duration = Duration::from_secs(10);
/// ...at most this often per service.
const RESCHEDULE_EVERY: Duration = Duration::from_secs(60);

/// `1 s · 2^(n-1)`, at most 60 s, times a jitter in `[0.8, 1.2)`.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(6));
    base.min(Duration::from_secs(60)).mul_f64(jitter.clamp(0.8, 1.2))
}

/// A cheap jitter source: the sub-second clock. Good enough to de-synchronise retries.
pub(crate) fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    0.8 + f64::from(nanos % 400_000_000) / 1_000_000_000.0
}

impl<S: Swarm> Reconciler<S> {
    pub fn new(ctx: Context<S>, config: Config) -> Self {
        let env = environment(&ctx, &config);
        Self {
            ctx,
            config,
            env,
            backoff: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            culprits: std::sync::Mutex::default(),
            drift_seen: BTreeSet::new(),
            node_warnings_seen: BTreeSet::new(),
            node_names: BTreeMap::new(),
            identity: Replica::Lone,
            role: None,
            stranded: BTreeMap::new(),
            rescheduled: BTreeMap::new(),
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
        self.env = environment(&self.ctx, &config);
        self.backoff.retain(|name, _| config.extensions.contains_key(name));
        self.config = config;
    }

    /// Reads the swarm and computes the plan, writing nothing.
    ///
    /// Every new proxy config is checked by the real proxy binary first. When it is rejected,
    /// the services responsible are found (see [`Reconciler::find_culprits`]) and quarantined
    /// with the binary's reason, and the rest of the cluster converges without them. Only a
    /// rejection no service explains (the operator's own TOML) holds the cluster: its writes are
    /// dropped and its proxy keeps its last good config.
    pub async fn plan(&self) -> Result<(Observed, Plan), ReconcileError> {
        let mut observed = self.ctx.swarm.observe().await.map_err(ReconcileError::Observe)?;
        // The generations served and run: a new config's generation continues from them.
        observed.delivered = self.ctx.deliveries.known();
        observed.node_names.clone_from(&self.node_names);
        let mut excluded = self.remembered_culprits(&observed);
        for _round in 0..MAX_CULPRIT_ROUNDS {
            let desired = desired::desired_state_excluding(&self.config, &observed, &self.env, &excluded);
            let mut plan = plan::plan(&desired, &observed);
            let mut found = false;
            for (name, cluster) in &mut plan.clusters {
                let reason = match self.rejection(name, cluster).await {
                    None => continue,
                    Some(Refusal::NotChecked(why)) => {
                        hold_unchecked(cluster, &why);
                        continue;
                    }
                    Some(Refusal::Rejected(reason)) => reason,
                };
                let kind = cluster.proxy_kind;
                let routes = &desired.clusters[name].routes;
                match self.find_culprits(name, kind, routes, &observed, &excluded).await {
                    Some(culprits) if !culprits.is_empty() => {
                        for (service, why) in culprits {
                            warn!(extension = %name, service = %service, "{why}");
                            self.remember_culprit(&observed, &service, &why);
                            excluded.insert(service, why);
                        }
                        found = true;
                    }
                    _ => {
                        cluster.actions.clear();
                        cluster.delivery = None;
                        cluster.conflicts.push(format!(
                            "the new proxy config is rejected by {kind} ({reason}), and no service's labels explain it (check the TOML); the proxy keeps its last good config"
                        ));
                    }
                }
            }
            if !found {
                return Ok((observed, plan));
            }
        }
        // Culprits found in every round: plan once more, holding whatever is still rejected.
        let desired = desired::desired_state_excluding(&self.config, &observed, &self.env, &excluded);
        let mut plan = plan::plan(&desired, &observed);
        for (name, cluster) in &mut plan.clusters {
            match self.rejection(name, cluster).await {
                Some(Refusal::NotChecked(why)) => hold_unchecked(cluster, &why),
                Some(Refusal::Rejected(reason)) => {
                    cluster.actions.clear();
                    cluster.delivery = None;
                    cluster.conflicts.push(format!(
                        "the new proxy config is rejected by {} ({reason}); the proxy keeps its last good config",
                        cluster.proxy_kind
                    ));
                }
                None => {}
            }
        }
        Ok((observed, plan))
    }

    /// Why the config a cluster's plan would create or deliver may not be rolled out: the
    /// binary's reason when it is rejected (by the operator's binary, or by a proxy task's own,
    /// as a hitless extension reported), or why it could not be checked at all.
    async fn rejection(&self, extension: &str, cluster: &plan::ClusterPlan) -> Option<Refusal> {
        let Some(def) = cluster.new_config.as_ref() else {
            // Converged on the served config (recorded on the proxy service as soon as it was
            // served): its tasks' rejections arrive afterwards and still hold the cluster.
            let delivery = cluster.delivery.as_ref()?;
            return self.ctx.deliveries.rejected(extension, &delivery.hash).map(Refusal::Rejected);
        };
        let hash = def.labels.get(ownership::LABEL_SPEC_HASH).cloned().unwrap_or_default();
        if let Some(reason) = self.ctx.deliveries.rejected(extension, &hash) {
            return Some(Refusal::Rejected(reason));
        }
        let verdict = self.ctx.checker.check(cluster.proxy_kind, &hash, &String::from_utf8_lossy(&def.data)).await;
        crate::status::beat(&self.ctx.status);
        match verdict {
            Verdict::Rejected(reason) => Some(Refusal::Rejected(reason)),
            Verdict::Failed(reason) => Some(Refusal::NotChecked(reason)),
            Verdict::Accepted | Verdict::Unchecked => None,
        }
    }

    /// The cluster's config with `excluded` left out, checked: the binary's reason if rejected.
    async fn rejected_without(
        &self,
        extension: &str,
        kind: ProxyKind,
        observed: &Observed,
        excluded: &BTreeMap<String, String>,
    ) -> Option<String> {
        let desired = desired::desired_state_excluding(&self.config, observed, &self.env, excluded);
        let config = &desired.clusters.get(extension)?.proxy_config;
        let hash = config.labels.get(ownership::LABEL_SPEC_HASH).cloned().unwrap_or_default();
        let verdict = self.ctx.checker.check(kind, &hash, &String::from_utf8_lossy(&config.data)).await;
        crate::status::beat(&self.ctx.status);
        match verdict {
            Verdict::Rejected(reason) => Some(reason),
            // The search is over configs the binary could judge; the caller held the cluster
            // before searching when it could not.
            Verdict::Accepted | Verdict::Unchecked | Verdict::Failed(_) => None,
        }
    }

    /// The services whose routes make the binary reject the cluster's config, with the reason
    /// to quarantine them for; `None` when the config is rejected even without any service (the
    /// TOML's doing). A bisection over the cluster's routed services, oldest first: the culprit
    /// is the service whose addition first makes the config fail, so of two services that clash
    /// only together the newer one goes. Bounded: `MAX_CULPRITS` services, each in about
    /// log2(services) + 1 checks (verdicts are cached by content).
    async fn find_culprits(
        &self,
        extension: &str,
        kind: ProxyKind,
        routes: &RouteTable,
        observed: &Observed,
        excluded: &BTreeMap<String, String>,
    ) -> Option<Vec<(String, String)>> {
        let routed: BTreeSet<&str> =
            routes.hosts.values().flatten().chain(&routes.default_backend).map(|b| b.service.as_str()).collect();
        let mut candidates: Vec<&ServiceFacts> =
            observed.services.iter().filter(|s| routed.contains(s.def.name.as_str())).collect();
        candidates.sort_by_key(|s| (Timestamp::parse(&s.created_at), s.id.clone()));
        let mut remaining: Vec<String> = candidates.iter().map(|s| s.def.name.clone()).collect();
        // The exclusions that leave, of `remaining`, only `keep` in the config.
        let keeping = |base: &BTreeMap<String, String>, remaining: &[String], keep: &[String]| {
            let mut out = base.clone();
            out.extend(remaining.iter().filter(|n| !keep.contains(n)).map(|n| (n.clone(), String::new())));
            out
        };
        if remaining.is_empty()
            || self.rejected_without(extension, kind, observed, &keeping(excluded, &remaining, &[])).await.is_some()
        {
            return None;
        }
        let mut base = excluded.clone();
        let mut culprits = Vec::new();
        let mut full_reason = self.rejected_without(extension, kind, observed, &base).await?;
        while culprits.len() < MAX_CULPRITS && !remaining.is_empty() {
            // The smallest prefix of `remaining` whose config is rejected ends with a culprit.
            let (mut lo, mut hi, mut reason) = (1, remaining.len(), full_reason.clone());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match self
                    .rejected_without(extension, kind, observed, &keeping(&base, &remaining, &remaining[..mid]))
                    .await
                {
                    Some(why) => (hi, reason) = (mid, why),
                    None => lo = mid + 1,
                }
            }
            let culprit = remaining.remove(lo - 1);
            let why = format!("the proxy config is rejected by {kind} with this service's routes: {reason}");
            base.insert(culprit.clone(), why.clone());
            culprits.push((culprit, why));
            match self.rejected_without(extension, kind, observed, &base).await {
                None => break,
                Some(why) => full_reason = why,
            }
        }
        Some(culprits)
    }

    /// Culprits found earlier whose labels have not changed since: excluded again without a new
    /// search. A changed service is judged afresh.
    fn remembered_culprits(&self, observed: &Observed) -> BTreeMap<String, String> {
        let mut culprits = self.culprits.lock().expect("culprits lock");
        culprits.retain(|name, culprit| {
            observed.services.iter().any(|s| s.def.name == *name && route_fingerprint(s) == culprit.fingerprint)
        });
        culprits.iter().map(|(name, c)| (name.clone(), c.reason.clone())).collect()
    }

    fn remember_culprit(&self, observed: &Observed, service: &str, reason: &str) {
        let Some(facts) = observed.services.iter().find(|s| s.def.name == service) else { return };
        self.culprits
            .lock()
            .expect("culprits lock")
            .insert(service.to_owned(), Culprit { fingerprint: route_fingerprint(facts), reason: reason.to_owned() });
    }

    /// One pass: observe, plan, write.
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let (observed, plan) = self.plan().await?;
        self.node_names = node_labels::remember_names(&observed.node_names, &self.config.node_labels, &observed.nodes);
        let mut report = PassReport {
            apps_settling: plan::apps_settling(&observed),
            unsettled: plan::unsettled(&observed),
            ..PassReport::default()
        };
        let role = self.role(&observed);
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
            for (_, task) in std::mem::take(&mut self.in_flight) {
                task.abort();
            }
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
            match self.write_node(action, &observed).await {
                Ok(()) => report.writes += 1,
                Err(e) => {
                    let Action::UpdateNode { hostname, .. } = action else { continue };
                    warn!(node = %hostname, "{action}: {e}");
                    report.failures.insert(format!("node {hostname}"), e.to_string());
                }
            }
        }
        self.collect(&mut report, Duration::ZERO).await;
        self.reschedule_stranded(&observed, &mut report).await;
        self.serve_deliveries(&observed, &plan);
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
            let (swarm, name_owned, actions) = (self.ctx.swarm.clone(), name.clone(), cluster.actions.clone());
            let task = tokio::spawn(async move {
                let mut done = 0;
                for action in &actions {
                    info!(extension = %name_owned, "{action}");
                    if let Err(e) = execute(&swarm, action).await {
                        return (done, Err(e.into()));
                    }
                    done += 1;
                }
                (done, Ok(()))
            });
            self.in_flight.insert(name.clone(), task);
        }
        self.collect(&mut report, PASS_WAIT).await;
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

    /// One node label update. When the node changed since it was read ("update out of
    /// sequence"), it is read again and its labels decided afresh from the config (with the
    /// pass's other nodes, so a refused hostname stays refused), so a label someone else wrote
    /// meanwhile is kept; a few times at most.
    async fn write_node(&self, action: &Action, observed: &Observed) -> Result<(), DockerError> {
        let mut action = action.clone();
        let mut tries = 0;
        loop {
            let Action::UpdateNode { id, version, labels, hostname, .. } = &action else {
                return execute(&self.ctx.swarm, &action).await;
            };
            match self.ctx.swarm.update_node(id, *version, labels).await {
                Err(DockerError::OutOfSequence { .. }) if tries < 3 => {
                    tries += 1;
                    let fresh = (|| self.ctx.swarm.inspect_node(id))
                        .retry(
                            ExponentialBuilder::default().with_min_delay(Duration::from_millis(50)).with_max_times(3),
                        )
                        .when(DockerError::is_transient)
                        .await?;
                    let Some(fresh) = fresh else {
                        return Err(DockerError::NotFound { operation: format!("update node {hostname}") });
                    };
                    let mut nodes = observed.nodes.clone();
                    nodes.retain(|n| n.id != fresh.id);
                    nodes.push(fresh.clone());
                    let desired = node_labels::desired(&self.config.node_labels, &nodes, &observed.node_names);
                    match node_labels::decide(&fresh, &desired, self.config.drift_policy).update {
                        Some(next) => action = Action::from(next),
                        // Already as declared (or held by the drift policy): nothing left to do.
                        None => return Ok(()),
                    }
                }
                other => return other,
            }
        }
    }

    /// Swarm's scheduler can leave a task pending on a host-mode port it believes in use and not
    /// look at it again once the port is freed (seen on the lab when two proxies swap nodes, or
    /// a proxy replaces a removed one on the same port): the proxy then never runs. An owned
    /// service with no running task whose task has waited so for [`STRANDED_AFTER`] is
    /// rescheduled (`docker service update --force`: no task of it serves, so nothing is
    /// interrupted), at most every [`RESCHEDULE_EVERY`], and never while its cluster writes.
    async fn reschedule_stranded(&mut self, observed: &Observed, report: &mut PassReport) {
        let now = Instant::now();
        let stranded: Vec<&ServiceFacts> = observed
            .services
            .iter()
            .filter(|s| ownership::is_owned(&s.def.labels))
            .filter(|s| !observed.tasks.iter().any(|t| t.service_id == s.id && t.running))
            .filter(|s| observed.tasks.iter().any(|t| t.service_id == s.id && t.waiting_for_port))
            .collect();
        self.stranded.retain(|id, _| stranded.iter().any(|s| s.id == *id));
        for service in stranded {
            let since = *self.stranded.entry(service.id.clone()).or_insert(now);
            let writing =
                service.def.labels.get(ownership::LABEL_EXTENSION).is_some_and(|e| self.in_flight.contains_key(e));
            let due = now.duration_since(since) >= STRANDED_AFTER
                && self.rescheduled.get(&service.id).is_none_or(|t| now.duration_since(*t) >= RESCHEDULE_EVERY);
            if writing || !due {
                continue;
            }
            warn!(
                service = %service.def.name,
                "Swarm left its task pending on a host port it reports in use, and no task of it runs: rescheduling it"
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

    /// When the earliest backing-off cluster may retry.
    #[cfg(test)]
    pub fn next_retry(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).min()
    }

    /// When the earliest backing-off cluster may retry, among retry times later than `since`
    /// (the start of the last pass: an earlier one was that pass's to take).
    pub fn next_retry_after(&self, since: Instant) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).filter(|until| *until > since).min()
    }

    /// Extensions whose writes are still running.
    pub fn busy(&self) -> Vec<String> {
        self.in_flight.keys().cloned().collect()
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

    fn record(
        &mut self,
        report: &mut PassReport,
        name: String,
        joined: Result<ClusterOutcome, tokio::task::JoinError>,
    ) {
        let (done, result) =
            joined.unwrap_or_else(|e| (0, Err(WriteError::Aborted { extension: name.clone(), reason: e.to_string() })));
        report.writes += done;
        match result {
            Ok(()) => {
                self.backoff.remove(&name);
            }
            // Someone wrote since the read: another replica (an object of the same name
            // created, a version moved), a person, Swarm finishing a rollout. Plan again.
            Err(WriteError::Docker(DockerError::OutOfSequence { operation } | DockerError::Conflict { operation })) => {
                let before = self.backoff.get(&name).copied();
                let conflicts = before.map_or(0, |b| b.conflicts) + 1;
                let delay = conflict_delay(conflicts, jitter());
                info!(extension = %name, conflicts, replan_in = ?delay, "{operation}: changed since it was read; planning it again from a fresh read");
                let failures = before.map_or(0, |b| b.failures);
                self.backoff.insert(name.clone(), Backoff { failures, conflicts, until: Instant::now() + delay });
                report.conflicts.push(name);
            }
            Err(e) => {
                let failures = self.backoff.get(&name).map_or(0, |b| b.failures) + 1;
                let delay = backoff_delay(failures, jitter());
                warn!(extension = %name, failures, retry_in = ?delay, "{e}");
                self.backoff.insert(name.clone(), Backoff { failures, conflicts: 0, until: Instant::now() + delay });
                report.failures.insert(name, e.to_string());
            }
        }
    }
}

/// Carries out one write.
async fn execute<S: Swarm>(swarm: &S, action: &Action) -> Result<(), DockerError> {
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
        // The pass writes nodes itself (`Reconciler::write_node`: it re-decides on a conflict).
        Action::UpdateNode { id, version, labels, .. } => swarm.update_node(id, *version, labels).await,
    }
}

/// Writes only the operator network and the statistics agent `config` implies, nothing else (no
/// cluster, no collection): for Interlock 0.3's `start`, which routes nothing and must not
/// touch objects a TOML-driven core owns. Returns the writes made.
pub async fn ensure_agent<S: Swarm>(ctx: &Context<S>, config: &Config) -> Result<usize, ReconcileError> {
    let env = environment(ctx, config);
    let mut writes = 0;
    // The network first, then the agent that joins it.
    for _ in 0..2 {
        let observed = ctx.swarm.observe().await.map_err(ReconcileError::Observe)?;
        let plan = plan::plan(&desired::desired_state(config, &observed, &env), &observed);
        if plan.shared.is_empty() && plan.agent.is_empty() {
            break;
        }
        for action in plan.shared.iter().chain(&plan.agent) {
            info!("{action}");
            execute(&ctx.swarm, action).await.map_err(ReconcileError::Network)?;
            writes += 1;
        }
    }
    Ok(writes)
}

impl<S: Swarm> Reconciler<S> {
    /// This process's role in the pass that read `observed`.
    fn role(&self, observed: &Observed) -> leader::Role {
        let identity = match &self.identity {
            Replica::Lone => leader::Identity::Lone,
            Replica::Task(id) => leader::Identity::Task(id.clone()),
            Replica::ByHand => leader::Identity::ByHand { core_running: core_service_running(observed).is_some() },
        };
        let replicas = core_replicas(observed, self.ctx.core_service.as_deref());
        leader::role(&identity, &observed.nodes, &replicas)
    }
}

/// Why a replica stands by, for its log line.
pub fn standing(why: leader::Standing) -> &'static str {
    match why {
        leader::Standing::Replica => {
            "another replica of the core writes (the one on the Raft leader, the oldest there)"
        }
        leader::Standing::Electing => "no manager is the Raft leader yet; nobody writes until one is",
        leader::Standing::NotYetRunning => "this replica's task is not listed as running yet",
        leader::Standing::BesideService => {
            "a core service runs and writes; this core, run by hand, writes nothing (`--writer` makes it write anyway)"
        }
    }
}

/// The tasks of the core's own service (`core_service`, by name).
fn core_replicas<'a>(observed: &'a Observed, core_service: Option<&str>) -> Vec<&'a TaskFacts> {
    let Some(name) = core_service else { return Vec::new() };
    let Some(service) = observed.services.iter().find(|s| s.def.name == name) else { return Vec::new() };
    observed.tasks.iter().filter(|t| t.service_id == service.id).collect()
}

/// The core service that wrote the owned extension services, if one has running tasks.
pub fn core_service_running(observed: &Observed) -> Option<&str> {
    observed
        .services
        .iter()
        .filter(|s| ownership::is_owned(&s.def.labels))
        .filter_map(|s| s.def.labels.get(ownership::LABEL_CORE_SERVICE))
        .find(|name| {
            observed
                .services
                .iter()
                .find(|s| s.def.name == **name)
                .is_some_and(|core| observed.tasks.iter().any(|t| t.service_id == core.id && t.running))
        })
        .map(String::as_str)
}

/// What the core is told about where the operator runs.
fn environment<S: Swarm>(ctx: &Context<S>, config: &Config) -> Environment {
    Environment::new(config).with_extension_key(ctx.deliveries.key()).running_as(
        config,
        ctx.core_service.clone(),
        ctx.core_image.clone(),
    )
}

/// Why a new proxy config is not rolled out.
enum Refusal {
    /// A proxy binary rejected it.
    Rejected(String),
    /// It could not be checked (the check itself failed to run).
    NotChecked(String),
}

/// Holds a cluster whose new config could not be checked: an unchecked config is never rolled
/// out, and no service is blamed for it.
fn hold_unchecked(cluster: &mut plan::ClusterPlan, why: &str) {
    cluster.actions.clear();
    cluster.delivery = None;
    cluster.conflicts.push(format!(
        "the new proxy config could not be checked ({why}): nothing is rolled out until it can be; the proxy keeps its config"
    ));
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

/// A delete of something already gone has done its job.
fn ignore_missing(result: Result<(), DockerError>) -> Result<(), DockerError> {
    match result {
        Err(DockerError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// The list filter for objects the operator owns.
pub fn managed_label() -> String {
    format!("{}={}", ownership::LABEL_MANAGED_BY, ownership::MANAGED_BY)
}

#[cfg(test)]
mod tests {
    //! The loop's concurrency and error rules, against the in-memory swarm with injected faults
    //! (time is paused: a 30 s write costs nothing).

    use super::*;
    use crate::memory_swarm::{MemorySwarm, scale_demo_east, seed_config, seed_swarm};
    use crate::proxycheck::ProxyChecker;

    fn reconciler(swarm: &MemorySwarm, config: Config) -> Reconciler<MemorySwarm> {
        Reconciler::new(Context::new(swarm.clone(), ProxyChecker::unchecked()), config)
    }

    /// Passes (waiting for every writer) until one plans nothing.
    async fn converge(r: &mut Reconciler<MemorySwarm>) {
        for _ in 0..6 {
            let report = r.pass().await.expect("pass");
            let settled = r.settle().await;
            assert!(report.failures.is_empty() && settled.failures.is_empty(), "{report:#?} {settled:#?}");
            if report.plan.is_empty() {
                return;
            }
        }
        panic!("no convergence");
    }

    fn with_us_east(config: &Config, edit: impl FnOnce(&mut reconcilers::config::Extension)) -> Config {
        let mut config = config.clone();
        edit(config.extensions.get_mut("us-east").expect("us-east"));
        config
    }

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

    #[tokio::test(start_paused = true)]
    async fn a_slow_cluster_does_not_hold_up_the_others() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.slow("us-east", Duration::from_secs(30));
        let mut r = reconciler(&swarm, seed_config());
        let started = Instant::now();
        let report = r.pass().await.unwrap();
        assert!(started.elapsed() <= PASS_WAIT + Duration::from_millis(100), "the pass waited {:?}", started.elapsed());
        assert_eq!(report.writes, 3, "us-west's config, proxy and extension: {report:#?}");
        assert!(swarm.service("interlock-proxy-us-west").is_some(), "us-west converged meanwhile");
        assert!(swarm.service("interlock-proxy-us-east").is_none(), "us-east is still writing");
        assert_eq!(r.busy(), ["us-east"]);

        // us-west moves on (a route change) while us-east still writes; us-east gets no second writer.
        swarm.edit(|o| o.tasks.retain(|t| t.service_id != "s-west"));
        let report = r.pass().await.unwrap();
        assert_eq!(report.busy, ["us-east"]);
        assert!(report.plan.clusters["us-west"].actions.iter().any(|a| a.to_string().contains("update service")));
        assert_eq!(swarm.most_writers_at_once("us-east"), 1);
        assert_eq!(swarm.most_writers_at_once("us-west"), 1);

        r.settle().await;
        converge(&mut r).await;
        assert!(swarm.service("interlock-proxy-us-east").is_some());
        assert_eq!(swarm.most_writers_at_once("us-east"), 1, "never two writers for one cluster");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_cluster_backs_off_with_jitter_while_the_others_converge() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.failing("us-east", u32::MAX);
        let mut r = reconciler(&swarm, seed_config());
        let report = r.pass().await.unwrap();
        assert!(report.failures["us-east"].contains("injected failure"), "{report:#?}");
        assert!(swarm.service("interlock-proxy-us-west").is_some(), "us-west converged");
        let wait = r.next_retry().expect("us-east backs off") - Instant::now();
        assert!((Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&wait), "{wait:?}");

        // Before the retry time: us-east is skipped, nothing is attempted.
        let attempts = swarm.attempts().len();
        let report = r.pass().await.unwrap();
        assert_eq!(report.backing_off, ["us-east"]);
        assert_eq!(swarm.attempts().len(), attempts, "no write while backing off");

        // After it: one more attempt, and a longer wait (2 s · jitter).
        tokio::time::advance(Duration::from_millis(1300)).await;
        let report = r.pass().await.unwrap();
        assert!(report.failures.contains_key("us-east"));
        assert_eq!(swarm.attempts().len(), attempts + 1, "one attempt, stopped at its first failure");
        let wait = r.next_retry().unwrap() - Instant::now();
        assert!((Duration::from_millis(1600)..=Duration::from_millis(2400)).contains(&wait), "{wait:?}");

        // Fixed: the next attempt converges and the backoff is gone.
        swarm.heal();
        tokio::time::advance(Duration::from_millis(2500)).await;
        converge(&mut r).await;
        assert!(swarm.service("interlock-proxy-us-east").is_some());
        assert_eq!(r.next_retry(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_update_out_of_sequence_is_planned_again_from_a_fresh_read_not_rewritten() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, seed_config());
        converge(&mut r).await;
        let before = swarm.service("interlock-proxy-us-east").unwrap();
        swarm.out_of_sequence_once("interlock-proxy-us-east");
        swarm.edit(|o| scale_demo_east(o, "10.0.1.6"));
        let report = r.pass().await.unwrap();
        let settled = r.settle().await;
        assert!(report.failures.is_empty() && settled.failures.is_empty(), "a conflict is no failure: {settled:#?}");
        assert_eq!([report.conflicts, settled.conflicts].concat(), ["us-east"]);
        let updates = || swarm.attempts().iter().filter(|a| *a == "update service interlock-proxy-us-east").count();
        assert_eq!(updates(), 1, "the refused update is not sent again with the spec of the old read");
        let retry = r.next_retry().expect("planned again soon");
        assert!(retry - Instant::now() <= Duration::from_millis(300), "soon, not after a failure's backoff");
        tokio::time::sleep_until(retry).await;
        r.pass().await.unwrap();
        r.settle().await;
        assert_eq!(updates(), 2, "planned afresh, written once");
        let after = swarm.service("interlock-proxy-us-east").unwrap();
        assert_ne!(after.def.configs, before.def.configs, "the new config is rolled out");
        assert_eq!(after.version, before.version + 2, "someone else's write, then ours");
    }

    /// Two replicas that both believe they write (their reads a moment apart) with different
    /// configs: the one whose write was planned from the older read loses Swarm's version check
    /// and does not overwrite the newer spec.
    #[tokio::test(start_paused = true)]
    async fn a_stale_replica_never_overwrites_a_newer_spec() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut first = reconciler(&swarm, seed_config());
        converge(&mut first).await;
        let moved = with_us_east(&seed_config(), |e| e.proxy_image = "nginx:newer".into());
        let mut stale = reconciler(&swarm, seed_config());
        let mut fresh = reconciler(&swarm, moved);
        // Both read the same swarm; each write takes 10 s; the fresh one's lands first.
        swarm.slow("interlock-proxy-us-east", Duration::from_secs(10));
        swarm.edit(|o| scale_demo_east(o, "10.0.1.6"));
        let fresh_pass = fresh.pass();
        let stale_pass = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stale.pass().await
        };
        let (a, b) = tokio::join!(fresh_pass, stale_pass);
        let (a, b) = (a.unwrap(), b.unwrap());
        let (a2, b2) = (fresh.settle().await, stale.settle().await);
        assert!(a.conflicts.is_empty() && a2.conflicts.is_empty() && a.failures.is_empty(), "{a:#?}");
        assert!(b.failures.is_empty() && b2.failures.is_empty(), "{b:#?} {b2:#?}");
        assert_eq!([b.conflicts, b2.conflicts].concat(), ["us-east"]);
        let east = swarm.service("interlock-proxy-us-east").unwrap();
        assert_eq!(east.def.image, "nginx:newer", "the newer spec stands");
        let updates = swarm.attempts().iter().filter(|a| *a == "update service interlock-proxy-us-east").count();
        assert_eq!(updates, 1, "the stale one stopped at its first refused write and wrote no spec from its old read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_while_a_cluster_writes_starts_no_second_writer() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.slow("us-east", Duration::from_secs(30));
        let mut r = reconciler(&swarm, seed_config());
        r.pass().await.unwrap();
        assert_eq!(r.busy(), ["us-east"]);

        // A config edit that changes us-east, while its first writer still runs.
        let edited = with_us_east(r.config(), |ext| {
            ext.proxy_update_delay = Some(Duration::from_secs(3));
            ext.declared.insert("ProxyUpdateDelay");
        });
        r.reconfigure(edited);
        let report = r.pass().await.unwrap();
        assert_eq!(report.busy, ["us-east"], "the writer survived the reload");
        assert_eq!(swarm.most_writers_at_once("us-east"), 1);

        r.settle().await;
        converge(&mut r).await;
        assert_eq!(swarm.most_writers_at_once("us-east"), 1);
        let proxy = swarm.service("interlock-proxy-us-east").unwrap();
        assert_eq!(proxy.def.update.delay, Some(Duration::from_secs(3)), "the reloaded config won");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_survives_a_reload() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.failing("us-east", u32::MAX);
        let mut r = reconciler(&swarm, seed_config());
        r.pass().await.unwrap();
        let retry = r.next_retry().expect("backing off");
        let edited = with_us_east(r.config(), |ext| ext.proxy_update_delay = Some(Duration::from_secs(3)));
        r.reconfigure(edited);
        assert_eq!(r.next_retry(), Some(retry), "a reload is no way around the backoff");
        let report = r.pass().await.unwrap();
        assert_eq!(report.backing_off, ["us-east"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_extension_is_collected() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, seed_config());
        converge(&mut r).await;
        let mut east_only = r.config().clone();
        east_only.extensions.remove("us-west");
        r.reconfigure(east_only);
        converge(&mut r).await;
        let left = swarm.observed();
        assert!(left.services.iter().all(|s| !s.def.name.contains("us-west") || s.def.name == "demo-west"));
        assert!(left.configs.iter().all(|c| !c.name.contains("us-west")));
        assert!(left.services.iter().any(|s| s.def.name == "interlock-proxy-us-east"));
        assert!(left.services.iter().any(|s| s.def.name == "demo-west"), "apps stay");
    }

    #[tokio::test(start_paused = true)]
    async fn a_converged_swarm_gets_no_write() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, seed_config());
        converge(&mut r).await;
        let (_, writes) = swarm.requests();
        for _ in 0..3 {
            assert_eq!(r.pass().await.unwrap().writes, 0);
        }
        assert_eq!(swarm.requests().1, writes);
    }

    /// A service in us-east on demo-east's network, created after the walk-through's apps.
    fn tenant(swarm: &MemorySwarm, name: &str, host: &str, created: &str) {
        use reconcilers::labels::{LABEL_HOSTS, LABEL_PORT, LABEL_SERVICE_CLUSTER};
        let mut service = swarm.service("demo-east").expect("demo-east");
        service.id = format!("s-{name}");
        service.def.name = name.to_owned();
        service.def.labels = BTreeMap::from([
            (LABEL_HOSTS.to_owned(), host.to_owned()),
            (LABEL_PORT.to_owned(), "8080".to_owned()),
            (LABEL_SERVICE_CLUSTER.to_owned(), "us-east".to_owned()),
        ]);
        service.created_at = created.to_owned();
        swarm.edit(|o| o.services.push(service));
    }

    fn reason<'a>(plan: &'a Plan, extension: &str, service: &str) -> Option<&'a str> {
        plan.clusters[extension].quarantined.iter().find(|q| q.service == service).map(|q| q.reason.as_str())
    }

    /// "nginx" rejects any config routing bad.local, and any routing both a.local and b.local.
    fn picky(_: ProxyKind, text: &str) -> Verdict {
        if text.contains("bad.local") {
            Verdict::Rejected("[emerg] bad.local is not welcome".into())
        } else if text.contains("server_name a.local") && text.contains("server_name b.local") {
            Verdict::Rejected("[emerg] a.local and b.local clash".into())
        } else {
            Verdict::Accepted
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_config_quarantines_its_culprit_and_the_cluster_converges() {
        let swarm = MemorySwarm::new(seed_swarm());
        for (name, host, created) in [
            ("app-a", "a.local", "2026-01-05T00:00:00Z"),
            ("bad", "bad.local", "2026-01-03T00:00:00Z"),
            ("app-c", "c.local", "2026-01-04T00:00:00Z"),
        ] {
            tenant(&swarm, name, host, created);
        }
        let ctx = Context::new(swarm.clone(), ProxyChecker::judging(picky));
        let mut r = Reconciler::new(ctx, seed_config());
        let report = r.pass().await.unwrap();
        r.settle().await;
        let why = reason(&report.plan, "us-east", "bad").expect("the culprit is quarantined");
        assert!(why.contains("bad.local is not welcome"), "{why}");
        assert!(report.plan.clusters["us-east"].conflicts.is_empty(), "the cluster is not held");
        assert_eq!(reason(&report.plan, "us-east", "app-a"), None);
        let config = swarm.observed().configs.into_iter().find(|c| c.name.starts_with("interlock-proxy-us-east-"));
        let text = String::from_utf8(config.expect("us-east's config was written").data).unwrap();
        assert!(text.contains("a.local") && text.contains("c.local") && text.contains("demo-east.local"));
        assert!(!text.contains("bad.local"));

        // The next pass remembers it (no new search) and writes nothing.
        let report = r.pass().await.unwrap();
        assert!(reason(&report.plan, "us-east", "bad").is_some());
        assert!(report.plan.is_empty(), "{:#?}", report.plan);
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_services_that_clash_only_together_the_newer_goes() {
        let swarm = MemorySwarm::new(seed_swarm());
        tenant(&swarm, "older", "a.local", "2026-01-02T00:00:00Z");
        tenant(&swarm, "newer", "b.local", "2026-01-03T00:00:00Z");
        let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(picky)), seed_config());
        let (_, plan) = r.plan().await.unwrap();
        assert!(reason(&plan, "us-east", "newer").is_some_and(|w| w.contains("clash")), "{plan:#?}");
        assert_eq!(reason(&plan, "us-east", "older"), None);
        converge(&mut r).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_no_service_explains_holds_the_cluster() {
        /// us-east's config is rejected whatever its routes (its TOML options are at fault);
        /// us-west's is fine.
        fn toml_fault(_: ProxyKind, text: &str) -> Verdict {
            if text.contains("demo-west") {
                Verdict::Accepted
            } else {
                Verdict::Rejected("[emerg] unknown directive in the TOML's options".into())
            }
        }
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(toml_fault)), seed_config());
        let report = r.pass().await.unwrap();
        r.settle().await;
        let east = &report.plan.clusters["us-east"];
        assert!(east.actions.is_empty() && east.conflicts[0].contains("no service's labels explain it"), "{east:#?}");
        assert!(east.quarantined.is_empty(), "no innocent service is blamed");
        assert!(swarm.service("interlock-proxy-us-west").is_some(), "the other cluster converges");
        assert!(swarm.service("interlock-proxy-us-east").is_none());
    }

    fn hitless(config: &Config) -> Config {
        let mut config = config.clone();
        for ext in config.extensions.values_mut() {
            ext.hitless_service_update = true;
        }
        config
    }

    #[tokio::test(start_paused = true)]
    async fn a_hitless_route_change_is_served_before_it_is_recorded_and_writes_once() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, hitless(&seed_config()));
        converge(&mut r).await;
        let served = r.ctx.deliveries.current("us-east").expect("served from the first pass");
        swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
        let report = r.pass().await.unwrap();
        r.settle().await;
        let east = &report.plan.clusters["us-east"];
        assert!(matches!(east.proxy_change, Some(plan::ProxyChange::InPlace { .. })), "{east:#?}");
        let now = r.ctx.deliveries.current("us-east").unwrap();
        assert_ne!(now.hash, served.hash);
        assert_eq!(report.writes, 1, "one label-only update, no config object: {report:#?}");
        assert!(r.pass().await.unwrap().plan.is_empty(), "and then nothing");
        assert_eq!(r.ctx.deliveries.current("us-west").unwrap().extension, "us-west");
    }

    #[tokio::test(start_paused = true)]
    async fn a_config_a_proxy_task_rejects_is_not_served_and_holds_its_cluster() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, hitless(&seed_config()));
        converge(&mut r).await;
        let served = r.ctx.deliveries.current("us-east").unwrap();
        swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
        // What the next config will be, and a task whose own binary rejects it.
        let (_, plan) = r.plan().await.unwrap();
        let next = plan.clusters["us-east"].delivery.clone().unwrap().hash;
        let rejecting = crate::delivery::TaskReport {
            task: "t-proxy".into(),
            node: "lb-00".into(),
            container: "c".into(),
            hash: served.hash.clone(),
            generation: served.generation,
            rejected: Some(next),
            error: Some("[emerg] unknown directive".into()),
            applied_at: 1,
            took_ms: 1,
        };
        // The extension retries once before reporting again: two reports hold the cluster.
        r.ctx.deliveries.set_tasks("us-east", [("t-proxy".to_owned(), "lb-00".to_owned())].into());
        r.ctx.deliveries.accept_report("us-east", rejecting.clone()).unwrap();
        r.ctx.deliveries.accept_report("us-east", rejecting).unwrap();
        let report = r.pass().await.unwrap();
        let east = &report.plan.clusters["us-east"];
        assert!(east.actions.is_empty() && east.delivery.is_none(), "{east:#?}");
        assert!(east.conflicts[0].contains("rejected it: [emerg] unknown directive"), "{east:#?}");
        assert_eq!(r.ctx.deliveries.current("us-east").unwrap().hash, served.hash, "the last good config stays served");
    }

    /// The order it happens in: the config is served and recorded on the proxy service in one
    /// pass, and the task's two rejections arrive afterwards. They still hold the cluster.
    #[tokio::test(start_paused = true)]
    async fn a_rejection_reported_after_the_config_was_recorded_holds_the_cluster() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, hitless(&seed_config()));
        converge(&mut r).await;
        swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
        converge(&mut r).await;
        let served = r.ctx.deliveries.current("us-east").unwrap();
        // The proxy's task, which the core takes reports of.
        let proxy = swarm.service("interlock-proxy-us-east").unwrap();
        swarm.edit(|o| {
            o.tasks.push(reconcilers::observed::TaskFacts {
                id: "t-proxy".into(),
                service_id: proxy.id.clone(),
                node_id: "lb-00".into(),
                running: true,
                ..Default::default()
            })
        });
        assert!(r.pass().await.unwrap().plan.is_empty(), "served and recorded: converged");
        let rejecting = crate::delivery::TaskReport {
            task: "t-proxy".into(),
            node: "lb-00".into(),
            container: "c".into(),
            hash: "the-previous-one".into(),
            generation: served.generation - 1,
            rejected: Some(served.hash.clone()),
            error: Some("[emerg] unknown directive".into()),
            applied_at: 1,
            took_ms: 1,
        };
        r.ctx.deliveries.accept_report("us-east", rejecting.clone()).unwrap();
        assert!(r.pass().await.unwrap().plan.clusters["us-east"].conflicts.is_empty(), "one report holds nothing");
        r.ctx.deliveries.accept_report("us-east", rejecting).unwrap();
        let report = r.pass().await.unwrap();
        let east = &report.plan.clusters["us-east"];
        assert!(east.delivery.is_none(), "{east:#?}");
        assert!(east.conflicts[0].contains("rejected it: [emerg] unknown directive"), "{east:#?}");
    }

    /// The walk-through's nodes, unlabelled: a manager and two load balancers.
    fn with_nodes(swarm: &MemorySwarm) {
        let node = |hostname: &str| reconcilers::observed::NodeFacts {
            id: format!("id-{hostname}"),
            hostname: hostname.into(),
            role: reconcilers::observed::NodeRole::Worker,
            availability: reconcilers::observed::NodeAvailability::Active,
            ready: true,
            address: None,
            labels: BTreeMap::from([("hand".to_owned(), "1".to_owned())]),
            engine_labels: BTreeMap::new(),
            os: None,
            arch: None,
            version: 3,
            leader: false,
        };
        swarm.edit(|o| o.nodes = vec![node("mgr"), node("lb-00"), node("lb-01")]);
    }

    /// The walk-through with its `docker node update --label-add` steps as `[NodeLabels]`.
    fn seed_with_node_labels(extra: &str) -> Config {
        let text = format!(
            "{extra}\n{}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n[NodeLabels.lb-01]\nregion = \"us-west\"\n",
            reconcilers::fixtures::SEED
        );
        reconcilers::config::parse("t", &text).expect("valid").config
    }

    #[tokio::test(start_paused = true)]
    async fn node_labels_are_written_before_the_clusters_and_then_never_again() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_nodes(&swarm);
        let mut r = reconciler(&swarm, seed_with_node_labels(""));
        let report = r.pass().await.unwrap();
        r.settle().await;
        let attempts = swarm.attempts();
        assert_eq!(attempts[..2], ["update node lb-00", "update node lb-01"], "{attempts:#?}");
        let lb = swarm.node("lb-00").unwrap();
        assert_eq!((lb.labels["region"].as_str(), lb.labels["hand"].as_str()), ("us-east", "1"));
        assert_eq!(swarm.node("mgr").unwrap().version, 3, "no table, no record: never written");
        assert!(report.failures.is_empty(), "{report:#?}");
        converge(&mut r).await;
        let (_, writes) = swarm.requests();
        assert_eq!(r.pass().await.unwrap().writes, 0);
        assert_eq!(swarm.requests().1, writes, "a converged swarm gets no write");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_node_is_reported_and_retried_and_holds_up_no_cluster() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_nodes(&swarm);
        swarm.failing("lb-00", 1);
        let mut r = reconciler(&swarm, seed_with_node_labels(""));
        let report = r.pass().await.unwrap();
        r.settle().await;
        assert!(report.failures["node lb-00"].contains("injected failure"), "{report:#?}");
        assert_eq!(swarm.node("lb-01").unwrap().labels["region"], "us-west");
        assert!(swarm.service("interlock-proxy-us-east").is_some(), "the clusters went ahead");
        converge(&mut r).await;
        assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "us-east", "written on the next pass");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_changed_since_it_was_read_is_read_again_and_decided_afresh() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_nodes(&swarm);
        swarm.out_of_sequence_once("lb-00");
        let mut r = reconciler(&swarm, seed_with_node_labels(""));
        let report = r.pass().await.unwrap();
        assert!(report.failures.is_empty(), "{report:#?}");
        let updates = swarm.attempts().iter().filter(|a| *a == "update node lb-00").count();
        assert_eq!(updates, 2, "the lost update, then the retry at the fresh version");
        let lb = swarm.node("lb-00").unwrap();
        assert_eq!(lb.labels["someone-else"], "was-here", "the other writer's label is kept");
        assert_eq!(lb.labels["region"], "us-east");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_node_reporting_a_hostname_gets_nothing_and_the_first_is_left_alone_until_named_by_id() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_nodes(&swarm);
        let mut r = reconciler(&swarm, seed_with_node_labels(""));
        converge(&mut r).await;
        let node_by_id = |id: &str| swarm.observed().nodes.into_iter().find(|n| n.id == id).unwrap();
        let labelled = node_by_id("id-lb-00").labels;
        assert_eq!(labelled["region"], "us-east");

        // A worker joins calling itself lb-00.
        swarm.edit(|o| {
            let mut impostor = o.nodes.iter().find(|n| n.id == "id-lb-01").unwrap().clone();
            (impostor.id, impostor.hostname, impostor.labels) = ("id-impostor".into(), "lb-00".into(), BTreeMap::new());
            o.nodes.push(impostor);
        });
        let (_, writes) = swarm.requests();
        for _ in 0..2 {
            let report = r.pass().await.unwrap();
            r.settle().await;
            assert!(report.plan.nodes.is_empty(), "{:#?}", report.plan.nodes);
            assert_eq!(report.plan.node_warnings.len(), 1, "{:#?}", report.plan.node_warnings);
            assert!(
                report.plan.node_warnings[0].starts_with("hostname lb-00 is reported by nodes id-lb-00, id-impostor")
            );
        }
        assert_eq!(r.node_warnings_seen.len(), 1, "logged once");
        assert_eq!(swarm.requests().1, writes, "nothing written");
        assert_eq!(node_by_id("id-lb-00").labels, labelled, "not written, nothing removed");
        assert!(node_by_id("id-impostor").labels.is_empty(), "the impostor gets nothing");

        // The operator names the right node by ID; its write loses the lock once and is decided
        // again from a fresh read, still refused the hostname tables.
        let text = format!(
            "{}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n[NodeLabels.lb-01]\nregion = \"us-west\"\n[NodeLabels.\"id-lb-00\"]\nregion = \"us-east-1\"\nrack = \"r1\"\n",
            reconcilers::fixtures::SEED
        );
        r.reconfigure(reconcilers::config::parse("t", &text).expect("valid").config);
        swarm.out_of_sequence_once("lb-00");
        let report = r.pass().await.unwrap();
        r.settle().await;
        assert!(report.failures.is_empty(), "{report:#?}");
        assert_eq!(report.plan.node_warnings.len(), 1, "the clash lasts");
        let lb = node_by_id("id-lb-00");
        assert_eq!((lb.labels["region"].as_str(), lb.labels["rack"].as_str()), ("us-east-1", "r1"));
        assert_eq!(lb.labels["nodetype"], "loadbalancer", "the hostname tables' keys stay as they were");
        assert_eq!(lb.labels["someone-else"], "was-here");
        assert!(node_by_id("id-impostor").labels.is_empty());
        assert!(r.pass().await.unwrap().plan.nodes.is_empty(), "converged");
    }

    #[tokio::test(start_paused = true)]
    async fn drift_is_reverted_or_with_report_left_alone() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_nodes(&swarm);
        let mut r = reconciler(&swarm, seed_with_node_labels(""));
        converge(&mut r).await;
        let hand_edit = |swarm: &MemorySwarm| {
            swarm.edit(|o| {
                let proxy = o.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap();
                proxy.def.ports[0].published = 8081;
                proxy.version += 1;
                let lb = o.nodes.iter_mut().find(|n| n.hostname == "lb-00").unwrap();
                lb.labels.insert("region".into(), "elsewhere".into());
                lb.version += 1;
            })
        };
        hand_edit(&swarm);
        let report = r.pass().await.unwrap();
        r.settle().await;
        assert_eq!(
            report.plan.drift(),
            ["node lb-00: label region edited by hand", "service interlock-proxy-us-east: ports edited by hand"]
        );
        assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "us-east", "reverted");
        assert_eq!(swarm.service("interlock-proxy-us-east").unwrap().def.ports[0].published, 80, "reverted");
        assert!(r.pass().await.unwrap().plan.drift().is_empty());

        r.reconfigure(seed_with_node_labels("DriftPolicy = \"report\""));
        hand_edit(&swarm);
        let (_, writes) = swarm.requests();
        let report = r.pass().await.unwrap();
        assert_eq!(report.plan.drift().len(), 2);
        assert_eq!(report.writes, 0);
        assert_eq!(swarm.requests().1, writes, "reported, not written");
        assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "elsewhere");
    }

    /// A swarm whose managers are `nodes` (`(id, leader)`) running the core service `interlock`
    /// with one task per `(task, node, created)`.
    fn with_core_replicas(swarm: &MemorySwarm, nodes: &[(&str, bool)], replicas: &[(&str, &str, &str)]) {
        use reconcilers::fixtures::{app, manager, task};
        swarm.edit(|o| {
            o.nodes = nodes.iter().map(|(id, leader)| manager(id, *leader)).collect();
            let mut core = app("svc-core", "interlock", "none", "net-interlock");
            core.def.labels.clear();
            o.services.push(core);
            for (id, node, created) in replicas {
                o.tasks.push(reconcilers::observed::TaskFacts {
                    node_id: (*node).into(),
                    created: (*created).into(),
                    ..task(id, "svc-core", "net-interlock", "10.0.9.1")
                });
            }
        });
    }

    /// A replica of the core service `interlock` sharing `swarm`, its task `task`.
    fn core_replica(swarm: &MemorySwarm, config: Config, task: &str) -> Reconciler<MemorySwarm> {
        let mut ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        ctx.core_service = Some("interlock".into());
        Reconciler::new(ctx, config).as_replica(Replica::Task(task.into()))
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_replica_on_the_raft_leader_writes_and_a_standby_takes_over() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_core_replicas(&swarm, &[("m1", true), ("m2", false)], &[("t1", "m1", "1"), ("t2", "m2", "1")]);
        let mut standby = core_replica(&swarm, hitless(&seed_config()), "t2");
        let report = standby.pass().await.unwrap();
        assert_eq!(report.writes, 0, "a standby writes nothing: {report:#?}");
        assert_eq!(report.standby.as_deref(), Some("manager-m1"));
        assert!(!report.plan.is_empty(), "it still plans");
        let mut active = core_replica(&swarm, hitless(&seed_config()), "t1");
        converge(&mut active).await;
        // Only the writer serves configs; the standby names it.
        let report = standby.pass().await.unwrap();
        assert!(report.plan.is_empty() && report.standby.is_some());
        assert!(standby.ctx.deliveries.current("us-east").is_none());
        assert_eq!(standby.ctx.deliveries.serving(), Serving::Standby("manager-m1".into()));
        assert_eq!(active.ctx.deliveries.serving(), Serving::Writer);
        let served = active.ctx.deliveries.current("us-east").unwrap();
        // m1 is lost; Raft elects m2: its replica writes from its next pass, and continues the
        // generations the swarm recorded.
        swarm.edit(|o| {
            o.nodes = vec![reconcilers::fixtures::manager("m2", true)];
            o.tasks.retain(|t| t.node_id != "m1");
            scale_demo_east(o, "10.0.1.9");
        });
        let report = standby.pass().await.unwrap();
        standby.settle().await;
        assert_eq!(report.standby, None);
        assert_eq!(report.writes, 1, "the new active replica delivers the change: {report:#?}");
        let next = standby.ctx.deliveries.current("us-east").unwrap();
        assert!(next.generation > served.generation, "{} after {}", next.generation, served.generation);
        // While Raft elects (no leader), nobody writes.
        swarm.edit(|o| {
            o.nodes = vec![reconcilers::fixtures::manager("m2", false)];
            scale_demo_east(o, "10.0.1.10");
        });
        assert_eq!(standby.pass().await.unwrap().writes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_replicas_on_one_manager_exactly_one_writes_and_the_newer_never_takes_over() {
        let swarm = MemorySwarm::new(seed_swarm());
        let (old, new) = ("2026-12-04T10:00:00.000000000Z", "2026-12-04T11:00:00.000000000Z");
        // The newer task has the lower ID: age decides, not the ID.
        with_core_replicas(&swarm, &[("m1", true)], &[("t9", "m1", old), ("t1", "m1", new)]);
        let mut older = core_replica(&swarm, hitless(&seed_config()), "t9");
        let mut newer = core_replica(&swarm, hitless(&seed_config()), "t1");
        for _ in 0..3 {
            let (a, b) = tokio::join!(older.pass(), newer.pass());
            let (a, b) = (a.unwrap(), b.unwrap());
            older.settle().await;
            assert_eq!(a.standby, None, "the older replica writes");
            assert_eq!(b.standby.as_deref(), Some("manager-m1"));
            assert_eq!(b.writes, 0);
        }
        assert_eq!(swarm.most_writers_at_once("us-east"), 1);
        // The older one's task stops (a start-first update of the core): the newer one writes.
        swarm.edit(|o| o.tasks.retain(|t| t.id != "t9"));
        swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
        let report = newer.pass().await.unwrap();
        assert_eq!(report.standby, None);
        newer.settle().await;
        assert!(newer.pass().await.unwrap().plan.is_empty(), "it converged");
    }

    #[tokio::test(start_paused = true)]
    async fn a_core_run_by_hand_beside_a_core_service_writes_nothing() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_core_replicas(&swarm, &[("m1", true)], &[("t1", "m1", "1")]);
        let mut service = core_replica(&swarm, seed_config(), "t1");
        converge(&mut service).await;
        let (_, writes) = swarm.requests();
        let mut by_hand = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::unchecked()), seed_config())
            .as_replica(Replica::ByHand);
        swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
        let report = by_hand.pass().await.unwrap();
        assert_eq!(report.standby.as_deref(), Some("manager-m1"), "{report:#?}");
        assert_eq!(swarm.requests().1, writes, "nothing written");
        // The core service gone, the core run by hand writes.
        swarm.edit(|o| o.tasks.retain(|t| t.id != "t1"));
        let report = by_hand.pass().await.unwrap();
        assert_eq!(report.standby, None);
        assert!(report.writes > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_core_on_a_follower_manager_writes() {
        let swarm = MemorySwarm::new(seed_swarm());
        with_core_replicas(&swarm, &[("m1", true), ("m2", false)], &[("t-core", "m2", "1")]);
        let mut lone = core_replica(&swarm, seed_config(), "t-core");
        let report = lone.pass().await.unwrap();
        assert_eq!(report.standby, None, "no replica on the leader: the lone core writes");
        assert!(report.writes > 0, "{report:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_config_that_could_not_be_checked_is_not_rolled_out_and_no_service_is_blamed() {
        fn broken_tmp(_: ProxyKind, _: &str) -> Verdict {
            Verdict::Failed("cannot prepare the check in /tmp: Read-only file system (os error 30)".into())
        }
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(broken_tmp)), seed_config());
        let report = r.pass().await.unwrap();
        r.settle().await;
        for cluster in report.plan.clusters.values() {
            assert!(cluster.actions.is_empty(), "{cluster:#?}");
            assert!(cluster.quarantined.is_empty(), "no service is blamed");
            assert!(cluster.conflicts[0].contains("could not be checked (cannot prepare the check in /tmp: Read-only"));
        }
        assert!(swarm.service("interlock-proxy-us-east").is_none(), "nothing unchecked is rolled out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_task_swarm_left_waiting_for_a_freed_port_is_rescheduled_once_due() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, seed_config());
        converge(&mut r).await;
        let east = swarm.service("interlock-proxy-us-east").unwrap();
        let west = swarm.service("interlock-proxy-us-west").unwrap();
        swarm.edit(|o| {
            let waiting = |id: &str, service: &str, running: bool| reconcilers::observed::TaskFacts {
                id: id.into(),
                service_id: service.into(),
                node_id: "lb-00".into(),
                running,
                addresses: vec![],
                waiting_for_port: !running,
                created: String::new(),
            };
            o.tasks.push(waiting("p-east", &east.id, false));
            // us-west also has one waiting, but another of its tasks runs: it is left alone.
            o.tasks.push(waiting("p-west", &west.id, false));
            o.tasks.push(waiting("p-west-2", &west.id, true));
        });
        assert_eq!(r.pass().await.unwrap().writes, 0, "not yet: Swarm may still place it");
        tokio::time::advance(STRANDED_AFTER + Duration::from_secs(1)).await;
        let report = r.pass().await.unwrap();
        assert_eq!(report.writes, 1, "{report:#?}");
        assert!(swarm.tasks().iter().any(|t| t.id == "p-east" && t.running), "rescheduled and running");
        assert!(
            swarm.tasks().iter().any(|t| t.id == "p-west" && t.waiting_for_port),
            "a running service is not touched"
        );
        assert_eq!(r.pass().await.unwrap().writes, 0, "once");
    }
}
