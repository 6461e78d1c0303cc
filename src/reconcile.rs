//! One reconcile pass: read the swarm fresh, ask the core what to write, write it.
//!
//! Clusters are written concurrently and independently: each cluster's writes run as their own
//! task, at most one per cluster at a time, and a pass does not wait for a slow one (it waits a
//! moment, then moves on; the outcome is collected by a later pass). So a failing or slow cluster
//! holds up no other. A cluster whose writes failed waits out an exponential backoff with jitter
//! before its next attempt; success resets it. Writes that lose Swarm's optimistic lock ("update out of
//! sequence") re-read the object's version and retry at once, a few times.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reconcilers::config::Config;
use reconcilers::desired::{self, Environment, Observed};
use reconcilers::plan::{self, Action, Plan};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::context::Context;
use crate::docker::DockerError;
use crate::proxycheck::Verdict;
use crate::swarm::Swarm;

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

/// Runs passes; keeps the config, the per-cluster backoff and the write tasks between them. A
/// config reload ([`Reconciler::reconfigure`]) swaps the config inside, so in-flight writes and
/// backoff survive it: there is never a second writer for a cluster.
pub struct Reconciler<S: Swarm> {
    ctx: Context<S>,
    config: Config,
    env: Environment,
    backoff: BTreeMap<String, Backoff>,
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

impl<S: Swarm> Reconciler<S> {
    pub fn new(ctx: Context<S>, config: Config) -> Self {
        let env = Environment::new(&config);
        Self { ctx, config, env, backoff: BTreeMap::new(), in_flight: BTreeMap::new() }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Converges to `config` from the next pass on. Write tasks still running keep running and
    /// are collected as before; backoff is kept for extensions that remain.
    pub fn reconfigure(&mut self, config: Config) {
        self.env = Environment::new(&config);
        self.backoff.retain(|name, _| config.extensions.contains_key(name));
        self.config = config;
    }

    /// Reads the swarm and computes the plan, writing nothing. A cluster whose new proxy config
    /// the real proxy binary rejects keeps its last good config: its writes are dropped from the
    /// plan and the reason is shown instead.
    pub async fn plan(&self) -> Result<(Observed, Plan), ReconcileError> {
        let observed = self.ctx.swarm.observe().await.map_err(ReconcileError::Observe)?;
        let desired = desired::desired_state(&self.config, &observed, &self.env);
        let mut plan = plan::plan(&desired, &observed);
        for cluster in plan.clusters.values_mut() {
            let new_config = cluster.actions.iter().find_map(|a| match a {
                Action::CreateConfig(def) => Some(def),
                _ => None,
            });
            let Some(def) = new_config else { continue };
            let hash = def.labels.get(desired::LABEL_SPEC_HASH).cloned().unwrap_or_default();
            let kind = cluster.proxy_kind;
            let text = String::from_utf8_lossy(&def.data);
            if let Verdict::Rejected(reason) = self.ctx.checker.check(kind, &hash, &text).await {
                cluster.actions.clear();
                cluster.conflicts.push(format!(
                    "the new proxy config is rejected by {kind} ({reason}); the proxy keeps its last good config"
                ));
            }
        }
        Ok((observed, plan))
    }

    /// One pass: observe, plan, write.
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let (observed, plan) = self.plan().await?;
        let mut report = PassReport {
            apps_settling: plan::apps_settling(&observed),
            unsettled: plan::unsettled(&observed),
            ..PassReport::default()
        };
        for action in &plan.shared {
            execute(&self.ctx.swarm, action).await.map_err(ReconcileError::Network)?;
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

    /// When the earliest backing-off cluster may retry, if any is backing off.
    pub fn next_retry(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.until).min()
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
async fn execute<S: Swarm>(swarm: &S, action: &Action) -> Result<(), DockerError> {
    match action {
        Action::CreateNetwork(def) => swarm.create_network(def).await,
        Action::CreateConfig(def) => match swarm.create_config(def).await {
            // Created by an earlier, interrupted pass: same name, same content.
            Err(DockerError::Conflict { .. }) => Ok(()),
            other => other,
        },
        Action::CreateService(def) => swarm.create_service(def).await,
        Action::UpdateService { id, version, def, .. } => {
            let mut version = *version;
            let mut tries = 0;
            loop {
                match swarm.update_service(id, version, def).await {
                    Err(DockerError::OutOfSequence { .. }) if tries < 3 => {
                        tries += 1;
                        // Someone (often Swarm itself, finishing a rollout) moved the version.
                        let fresh = (|| swarm.inspect_service(id))
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
        Action::DeleteService { id, .. } => ignore_missing(swarm.delete_service(id).await),
        Action::DeleteConfig { id, .. } => ignore_missing(swarm.delete_config(id).await),
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
    async fn an_update_out_of_sequence_rereads_the_version_and_retries() {
        let swarm = MemorySwarm::new(seed_swarm());
        let mut r = reconciler(&swarm, seed_config());
        converge(&mut r).await;
        let before = swarm.service("interlock-proxy-us-east").unwrap();
        swarm.out_of_sequence_once("interlock-proxy-us-east");
        swarm.edit(|o| scale_demo_east(o, "10.0.1.6"));
        let report = r.pass().await.unwrap();
        let settled = r.settle().await;
        assert!(report.failures.is_empty() && settled.failures.is_empty(), "{settled:#?}");
        let updates = swarm.attempts().iter().filter(|a| *a == "update service interlock-proxy-us-east").count();
        assert_eq!(updates, 2, "the lost update, then the retry at the fresh version");
        let after = swarm.service("interlock-proxy-us-east").unwrap();
        assert_ne!(after.def.configs, before.def.configs, "the new config is rolled out");
        assert_eq!(after.version, before.version + 2, "someone else's write, then ours");
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
}
