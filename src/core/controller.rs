//! The long-running loop behind `interlock run`.
//!
//! ```text
//!  events (service/node/network/config/secret) ─┐
//!  PollInterval tick (and fast ticks while apps ─┤
//!    are starting: Swarm has no task events)    ├─▶ coalesce ─▶ pass: observe → plan → write
//!  SIGHUP / config file changed ─▶ validate ────┤                     (per-cluster backoff)
//!  a backing-off cluster's retry time ──────────┘
//!  SIGTERM / SIGINT ─▶ finish the current pass, exit
//! ```
//!
//! Events are hints: every pass reads the swarm afresh. A burst of triggers gives one pass. An
//! invalid config edit is reported and the last good config keeps running.
//!
//! Plug-ins (`[Plugins]`, [`crate::core::plugins`]): the loop dispatches `interlock-start` before
//! the first pass, every swarm event it receives, one [`PluginEvent::Pass`] per extension after
//! each pass, and `interlock-stop` at shutdown, then lets the plug-ins' queues drain for at most
//! [`DRAIN_GRACE`]. Dispatching never waits for a plug-in.
//!
//! Metrics ([`crate::core::metrics`]): after each pass the loop records it in `ctx.metrics`
//! (passes, duration, writes by kind, per-extension gauges); the event watcher counts
//! resubscriptions; each swarm event starts the label-to-config clock ([`PendingEvent`]) that the
//! first pass changing a proxy config stops.
//!
//! Backoff ([`crate::retry`]): after failed reads ([`retry::AFTER_FAILURE`], within PollInterval)
//! and before resubscribing to a failed event stream ([`retry::RESUBSCRIBE`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use reconcilers::config::{self, Config};
use reconcilers::observed::{ObjectKind, SwarmEvent};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::allocator;
use crate::core::acme::{self, Orderer};
use crate::core::context::{Context, Replica};
use crate::core::delivery::Serving;
use crate::core::metrics::{Metrics, PendingEvent};
use crate::core::pass_report::PassReport;
use crate::core::plugins::{DRAIN_GRACE, Dispatcher, PluginEvent, now_nanos};
use crate::core::reconcile::Reconciler;
use crate::core::server::{self, Endpoints};
use crate::core::status::{self, Status};
use crate::retry::{self, Windows};
use crate::swarm::Swarm;

/// How often to look again while app tasks are starting.
const FAST_POLL: Duration = Duration::from_millis(250);
/// After this many passes in a row that could not read the swarm, a replica stops serving
/// configs until one can.
const STALE_AFTER_FAILURES: u32 = 3;
/// The least time between two passes woken by an extension's task being ahead.
const BEHIND_GAP: Duration = Duration::from_secs(1);
/// How long to gather a burst of triggers into one pass.
const COALESCE: Duration = Duration::from_millis(20);
/// How often a standby looks again while the swarm has no Raft leader (an election): the new
/// leader's replica takes over on its first pass after the election, not a PollInterval later.
const ELECTION_POLL: Duration = Duration::from_secs(1);

/// How long the loop polls fast for one app service whose tasks are not all running: long
/// enough for tasks to start, and bounded, so that an app Swarm cannot place (an image no node
/// has, a constraint no node meets) does not keep the core reading the swarm four times a
/// second for ever. Its events and PollInterval still wake the loop. The loop keeps since when
/// each app service has been settling in a [`Windows`] of this length: a service that settles
/// and later starts tasks again (a scale, an update) gets a new window.
const SETTLE_WINDOW: Duration = Duration::from_secs(60);

/// What a pass left for the loop to decide when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassOutcome {
    /// The pass read the swarm; `settling` app services are still starting tasks (and have been
    /// for less than `SETTLE_WINDOW`); `electing`:
    /// this replica is a standby and no node is the Raft leader.
    Read { settling: usize, electing: bool },
    /// The swarm could not be read (the engine down, no Raft leader, a timeout).
    Failed,
}

/// The delay before the next pass (pure): PollInterval, shorter while apps start or Raft elects,
/// and after failed reads a backoff from 1 s ([`retry::AFTER_FAILURE`]: 1, 2, 4 s ...) that
/// never exceeds PollInterval, so an engine that comes back (or a new leader) is seen soon and a
/// failing one is not hammered. `failures` counts the failed passes in a row, this one included.
fn poll_after(outcome: PassOutcome, poll: Duration, failures: u32, jitter: f64) -> Duration {
    match outcome {
        PassOutcome::Failed => retry::AFTER_FAILURE.jittered(failures, jitter).min(poll),
        PassOutcome::Read { settling, .. } if settling > 0 => FAST_POLL.min(poll),
        PassOutcome::Read { electing: true, .. } => ELECTION_POLL.min(poll),
        PassOutcome::Read { .. } => poll,
    }
}

/// Why the loop was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A swarm event, received at this time.
    Event(Instant),
    /// The event stream (re)connected: anything may have been missed.
    Resync,
}

/// Errors that stop the loop.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs until `shutdown` completes (the binary passes [`crate::shutdown::termination`]), then
/// finishes the current pass and returns the final status (passes, writes, per-extension state).
pub async fn run<S: Swarm>(
    ctx: Context<S>,
    path: PathBuf,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Status, ControllerError> {
    tokio::pin!(shutdown);
    let mut hup = signal(SignalKind::hangup()).map_err(ControllerError::Signals)?;
    let endpoints =
        Endpoints { status: ctx.status.clone(), deliveries: ctx.deliveries.clone(), metrics: ctx.metrics.clone() };
    let server = tokio::spawn(server::serve_endpoints(config.listen_addr.bind_addr(), endpoints));
    let poll_interval = config.poll_interval;
    info!(config = %path.display(), poll = ?poll_interval, "running");
    for (name, version) in ctx.plugins.plugins() {
        info!("loading plugin name={name} version={version}");
    }
    ctx.plugins.dispatch(PluginEvent::start());
    // Several replicas may run; exactly one writes (`reconcilers::leader`).
    let mut reconciler = Reconciler::new(ctx.clone(), config).as_replica(ctx.identity.clone());
    // ACME orders, beside the passes, while this replica writes.
    let mut orderer = Orderer::new(ctx.swarm.clone(), Arc::new(acme::Client), ctx.acme.clone());
    let (tx, mut rx) = mpsc::channel::<Trigger>(256);
    let watcher = tokio::spawn(watch_events(ctx.swarm.clone(), tx, ctx.plugins.clone(), ctx.metrics.clone()));
    let mut file = FileState::read(&path);
    status::heartbeat(&ctx.status, status::liveness_bound(poll_interval));
    let mut next_poll = Instant::now();
    let mut last_pass = Instant::now();
    let mut pending = PendingEvent::default();
    let mut failures = 0u32;
    let mut settling = Windows::new(SETTLE_WINDOW);
    loop {
        let now = Instant::now();
        if now >= next_poll {
            // Cheap: a stat and, only when it changed, a read.
            if file.changed(&path) {
                reload(&path, &mut reconciler);
            }
            last_pass = Instant::now();
            let outcome = pass(&mut reconciler, &mut orderer, &ctx, &mut pending, &mut settling).await;
            // What the pass freed would otherwise stay resident (`crate::allocator`).
            allocator::release_freed();
            failures = if outcome == PassOutcome::Failed { failures.saturating_add(1) } else { 0 };
            if failures == STALE_AFTER_FAILURES {
                // It cannot see the swarm: another replica may be writing by now. Stop serving
                // configs (extensions go elsewhere, proxies keep theirs) until a pass reads it.
                ctx.deliveries.set_serving(Serving::Undecided);
            }
            let poll = reconciler.config().poll_interval;
            status::heartbeat(&ctx.status, status::liveness_bound(poll));
            next_poll = Instant::now() + poll_after(outcome, poll, failures, retry::jitter());
            // A shutdown that arrived during the pass ends the loop now.
            if futures_util::poll!(&mut shutdown).is_ready() {
                info!("stopping");
                break;
            }
            continue;
        }
        // A cluster's retry time wakes the loop once: a retry time the last pass already saw
        // (one that passed while the swarm could not be read, so the cluster never got to
        // retry) would otherwise wake it at once, again and again, around the failed-pass
        // backoff: about 2,000 requests a second against a failing engine.
        let wake = reconciler.next_retry_after(last_pass).map_or(next_poll, |retry| retry.min(next_poll));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if wake < next_poll { next_poll = Instant::now(); }
            }
            trigger = rx.recv() => {
                let Some(trigger) = trigger else { break };
                // Gather the rest of a burst.
                tokio::time::sleep(COALESCE).await;
                let mut burst = 0;
                for trigger in std::iter::once(trigger).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    if let Trigger::Event(at) = trigger {
                        pending.event(at);
                    }
                    burst += 1;
                }
                debug!(?trigger, triggers = burst, "woken");
                next_poll = Instant::now();
            }
            () = ctx.acme.woken() => {
                // An ACME order published or withdrew an answer, or stored a certificate.
                debug!("woken by an ACME order");
                next_poll = Instant::now();
            }
            () = ctx.deliveries.behind() => {
                // A proxy task runs a config as new as the served one: render a later one soon,
                // but at most one such pass a second, whatever extensions send.
                debug!("an extension's task is ahead of the served config");
                next_poll = next_poll.min((last_pass + BEHIND_GAP).max(Instant::now()));
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", path.display());
                file = FileState::read(&path);
                reload(&path, &mut reconciler);
                next_poll = Instant::now();
            }
            () = &mut shutdown => { info!("stopping"); break; }
        }
    }
    watcher.abort();
    server.abort();
    if !ctx.plugins.is_empty() {
        ctx.plugins.dispatch(PluginEvent::stop());
        ctx.plugins.close(DRAIN_GRACE).await;
    }
    let status = ctx.status.lock().expect("status lock").clone();
    info!(passes = status.passes, writes = status.writes, "stopped");
    Ok(status)
}

/// One pass; returns what decides the next one's time. Records it in the status and the
/// metrics, and stops the label-to-config clock when it changed a proxy config.
async fn pass<S: Swarm>(
    reconciler: &mut Reconciler<S>,
    orderer: &mut Orderer<S>,
    ctx: &Context<S>,
    pending: &mut PendingEvent,
    settling: &mut Windows,
) -> PassOutcome {
    let (reads_before, writes_before) = ctx.swarm.requests();
    let checking_before = ctx.checker.time_spent();
    let started = Instant::now();
    let result = reconciler.pass().await;
    let took = started.elapsed();
    let (reads, writes) = ctx.swarm.requests();
    // The proxy binary's checks apart: they cost what the config's size costs nginx or HAProxy.
    let checking = ctx.checker.time_spent().saturating_sub(checking_before);
    debug!(
        reads = reads - reads_before,
        writes = writes - writes_before,
        took_ms = took.as_millis() as u64,
        check_ms = checking.as_millis() as u64,
        read_ms = reconciler.last_read().as_millis() as u64,
        "pass requests"
    );
    match result {
        Ok(report) => {
            if report.writes > 0 {
                info!(writes = report.writes, "pass wrote");
            }
            for (extension, failure) in &report.failures {
                warn!(extension = %extension, "{failure}");
            }
            status::record(&ctx.status, &report.plan, &report.failures, report.writes);
            status::record_role(&ctx.status, report.standby.as_deref(), ctx.identity != Replica::Lone);
            orderer.after_pass(report.standby.is_none(), reconciler.config(), &report.plan, &ctx.deliveries.key());
            ctx.metrics.record_acme_orders(&ctx.acme.orders());
            let hosts = ctx.acme.hosts();
            ctx.metrics
                .record_acme_expiry(&hosts.iter().filter_map(|(h, s)| Some((h.clone(), s.not_after?))).collect());
            status::record_acme(&ctx.status, hosts);
            ctx.metrics.record_pass(&report, took, status::unix_now());
            if let Some(latency) = pending.pass_done(&report, Instant::now()) {
                debug!(?latency, "event to proxy config");
                ctx.metrics.label_to_config.observe(latency.as_secs_f64());
            }
            if !ctx.plugins.is_empty() {
                for event in pass_events(&report, took) {
                    ctx.plugins.dispatch(event);
                }
            }
            PassOutcome::Read {
                settling: settling.fresh(&report.apps_settling, Instant::now()),
                electing: report.standby.as_deref() == Some(""),
            }
        }
        Err(e) => {
            error!("{e}");
            status::record_failed_pass(&ctx.status, &e.to_string());
            ctx.metrics.record_failed_pass(took);
            PassOutcome::Failed
        }
    }
}

/// Re-reads the config file; a valid, changed config is swapped into the running reconciler (its
/// in-flight writes and backoff carry on). An invalid one is reported and the last good config
/// keeps running.
fn reload<S: Swarm>(path: &Path, reconciler: &mut Reconciler<S>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            error!("cannot read {}: {e}; keeping the last good config", path.display());
            return;
        }
    };
    match config::parse(&path.display().to_string(), &text) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                warn!("{warning}");
            }
            if loaded.config.plugins != reconciler.config().plugins {
                warn!("[Plugins] changed: plug-ins are started once, restart interlock to apply it");
            }
            if loaded.config != *reconciler.config() {
                info!("config changed: converging to it");
                reconciler.reconfigure(loaded.config);
            }
        }
        Err(e) => {
            for diagnostic in &e.diagnostics {
                error!("{diagnostic}");
            }
            error!("{}: invalid; keeping the last good config", path.display());
        }
    }
}

/// The config file's modification time and length, to notice edits without reading it.
struct FileState(Option<(SystemTime, u64)>);

impl FileState {
    fn read(path: &Path) -> Self {
        Self(std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
    }

    fn changed(&mut self, path: &Path) -> bool {
        let now = Self::read(path);
        let changed = now.0 != self.0;
        *self = now;
        changed
    }
}

/// One [`PluginEvent::Pass`] per extension of the pass's plan: its quarantined services, whether
/// its proxy config changed, how long the pass took.
fn pass_events(report: &PassReport, took: Duration) -> Vec<PluginEvent> {
    let time = now_nanos();
    report
        .plan
        .clusters
        .iter()
        .map(|(extension, cluster)| PluginEvent::Pass {
            extension: extension.clone(),
            routes: cluster.routes,
            backends: cluster.backends,
            quarantined: cluster.quarantined.len(),
            duration: took,
            routes_changed: cluster.config_change.is_some(),
            time,
        })
        .collect()
}

/// A swarm event as plug-ins see it.
fn plugin_event(event: &SwarmEvent) -> PluginEvent {
    let kind = match &event.kind {
        ObjectKind::Service => "service",
        ObjectKind::Node => "node",
        ObjectKind::Network => "network",
        ObjectKind::Config => "config",
        ObjectKind::Secret => "secret",
        ObjectKind::Other(other) => other,
    };
    PluginEvent::Docker {
        kind: kind.to_owned(),
        action: event.action.clone(),
        id: event.id.clone(),
        name: event.name.clone(),
        time: now_nanos(),
    }
}

/// Forwards swarm events as triggers (and to the plug-ins); reconnects with backoff and asks
/// for a full pass on every (re)connect, since events may have been missed. Each resubscription
/// is counted in `metrics`.
async fn watch_events<S: Swarm>(swarm: S, tx: mpsc::Sender<Trigger>, plugins: Arc<Dispatcher>, metrics: Arc<Metrics>) {
    let kinds = [ObjectKind::Service, ObjectKind::Node, ObjectKind::Network, ObjectKind::Config, ObjectKind::Secret];
    let mut failures: u32 = 0;
    let mut subscribed = false;
    loop {
        if subscribed {
            metrics.record_reconnect();
        }
        subscribed = true;
        let mut events = Box::pin(swarm.events(&kinds));
        if tx.send(Trigger::Resync).await.is_err() {
            return;
        }
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    failures = 0;
                    debug!(kind = ?event.kind, action = %event.action, name = ?event.name, "event");
                    plugins.dispatch(plugin_event(&event));
                    if tx.try_send(Trigger::Event(Instant::now())).is_err() && tx.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    warn!("event stream: {e}");
                    break;
                }
            }
        }
        failures += 1;
        let delay = retry::RESUBSCRIBE.delay(failures);
        debug!(?delay, "event stream ended; reconnecting");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    //! The loop against the in-memory swarm (paused time).

    use super::*;
    use crate::core::proxycheck::ProxyChecker;
    use crate::swarm::memory::MemorySwarm;
    use reconcilers::config::ListenAddr;
    use reconcilers::fixtures::{seed_config, seed_swarm};

    /// The walk-through's config in a file of its own, its status endpoint on a free port.
    fn setup(name: &str) -> (PathBuf, Config) {
        let dir = std::env::temp_dir().join(format!("interlock-controller-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, include_str!("../../deploy/examples/service-clusters.toml")).unwrap();
        let mut config = seed_config();
        config.listen_addr = ListenAddr { host: "127.0.0.1".into(), port: 0 };
        (path, config)
    }

    #[test]
    fn each_settling_app_earns_fast_polling_for_a_bounded_window() {
        let t0 = Instant::now();
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut settling = Windows::new(SETTLE_WINDOW);
        assert_eq!(settling.fresh(&ids(&["stuck"]), t0), 1);
        assert_eq!(
            settling.fresh(&ids(&["stuck"]), t0 + SETTLE_WINDOW),
            0,
            "a service Swarm cannot place stops the fast polling"
        );
        assert_eq!(settling.fresh(&ids(&["stuck", "new"]), t0 + SETTLE_WINDOW), 1, "a new one earns its own window");
        assert_eq!(settling.fresh(&ids(&["new"]), t0 + SETTLE_WINDOW * 2), 0);
        assert_eq!(settling.fresh(&[], t0 + SETTLE_WINDOW * 2), 0);
        assert_eq!(
            settling.fresh(&ids(&["stuck"]), t0 + SETTLE_WINDOW * 3),
            1,
            "settled, then starting tasks again: a new window"
        );
    }

    #[test]
    fn failed_reads_back_off_within_the_poll_interval_and_an_election_is_watched_closely() {
        let poll = Duration::from_secs(10);
        let after = |outcome, failures| poll_after(outcome, poll, failures, 1.0);
        let read = |settling, electing| PassOutcome::Read { settling, electing };
        assert_eq!(after(read(0, false), 0), poll);
        assert_eq!(after(read(2, false), 0), FAST_POLL);
        assert_eq!(after(read(0, true), 0), ELECTION_POLL, "a standby with no leader in sight looks again soon");
        let backoff: Vec<_> = (1..=6).map(|n| after(PassOutcome::Failed, n).as_secs()).collect();
        assert_eq!(backoff, [1, 2, 4, 8, 10, 10], "1 s, doubling, never past PollInterval");
        // A PollInterval shorter than any of these wins.
        let short = Duration::from_millis(100);
        for outcome in [read(0, false), read(1, false), read(0, true), PassOutcome::Failed] {
            assert_eq!(poll_after(outcome, short, 3, 1.0), short);
        }
    }

    /// The fresh-machine failure: a cluster backing off whose retry time passes while the swarm
    /// cannot be read made the loop pass again at once, for ever (about 2,000 requests a second
    /// against a failing engine). Here us-west's writes always fail (it backs off) and then
    /// every read fails: in 30 s the loop reads a handful of times, not thousands.
    #[tokio::test(start_paused = true)]
    async fn a_failing_engine_with_a_cluster_in_backoff_is_read_a_bounded_number_of_times() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.failing("interlock-proxy-us-west", u32::MAX);
        let (path, config) = setup("failing-observe");
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let watcher = swarm.clone();
        let shutdown = async move {
            // Long enough for us-west to fail a few times and hold a retry time.
            tokio::time::sleep(Duration::from_secs(12)).await;
            watcher.failing_observe();
            let (reads, _) = watcher.requests();
            tokio::time::sleep(Duration::from_secs(30)).await;
            let passes = (watcher.requests().0 - reads) / 6;
            // Backoff from 1 s, doubling, capped at PollInterval (3 s): about 11 in 30 s.
            assert!(passes <= 14, "{passes} reads of the swarm in 30 s while it fails");
            assert!(passes >= 5, "it keeps looking: {passes}");
        };
        run(ctx, path, config, shutdown).await.unwrap();
    }

    /// The event watcher: a stream that fails at once on every subscription is resubscribed
    /// with backoff (1 s doubling, at most 30 s), not in a loop.
    #[tokio::test(start_paused = true)]
    async fn a_failing_event_stream_is_resubscribed_with_backoff() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.failing_events();
        let (tx, mut rx) = mpsc::channel(1024);
        let metrics = Arc::new(Metrics::default());
        let watcher = tokio::spawn(watch_events(swarm.clone(), tx, Arc::new(Dispatcher::none()), metrics.clone()));
        let started = Instant::now();
        let mut subscriptions = 0;
        while let Ok(Some(trigger)) = tokio::time::timeout_at(started + Duration::from_secs(60), rx.recv()).await {
            assert_eq!(trigger, Trigger::Resync);
            subscriptions += 1;
        }
        watcher.abort();
        // 1 + 2 + 4 + 8 + 16 + 30 > 60: at most 7 subscriptions in a minute.
        assert!((4..=7).contains(&subscriptions), "{subscriptions} subscriptions in 60 s");
        swarm.heal();
    }

    /// A plug-in that records every event's name (and, for passes, the extension), after
    /// sleeping `delay` per event.
    struct Recorder {
        delay: Duration,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl crate::core::plugins::Plugin for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn version(&self) -> &'static str {
            "test"
        }

        fn handle<'a>(&'a self, event: &'a PluginEvent) -> crate::core::plugins::Handling<'a> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let line = match event {
                    PluginEvent::Pass { extension, quarantined, routes_changed, .. } => {
                        format!("pass {extension} quarantined={quarantined} changed={routes_changed}")
                    }
                    PluginEvent::Docker { kind, action, name, .. } => {
                        format!("{kind} {action} {}", name.as_deref().unwrap_or(""))
                    }
                    other => other.name().to_owned(),
                };
                self.seen.lock().unwrap().push(line);
                Ok(())
            })
        }
    }

    fn recorder(delay: Duration) -> (Dispatcher, Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        (Dispatcher::new(vec![Box::new(Recorder { delay, seen: seen.clone() })]), seen)
    }

    #[tokio::test(start_paused = true)]
    async fn plugins_get_start_swarm_events_passes_and_stop() {
        let swarm = MemorySwarm::new(seed_swarm());
        let (path, config) = setup("plugins");
        let poll = config.poll_interval;
        let (dispatcher, seen) = recorder(Duration::ZERO);
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked()).with_plugins(dispatcher);
        run(ctx, path, config, tokio::time::sleep(poll * 3)).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.first().map(String::as_str), Some("interlock-start"), "{seen:#?}");
        assert_eq!(seen.last().map(String::as_str), Some("interlock-stop"), "{seen:#?}");
        assert!(seen.contains(&"pass us-east quarantined=0 changed=true".to_owned()), "the first pass: {seen:#?}");
        assert!(seen.contains(&"pass us-west quarantined=0 changed=false".to_owned()), "a later one: {seen:#?}");
        assert!(seen.iter().any(|l| l.starts_with("service create interlock-proxy-us-east")), "{seen:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_plugin_never_delays_a_pass() {
        let (path, config) = setup("slow-plugin");
        let poll = config.poll_interval;
        let passes = |dispatcher: Dispatcher| {
            let (path, config) = (path.clone(), config.clone());
            async move {
                let swarm = MemorySwarm::new(seed_swarm());
                let ctx = Context::new(swarm, ProxyChecker::unchecked()).with_plugins(dispatcher);
                let started = Instant::now();
                let status = run(ctx, path, config, tokio::time::sleep(poll * 5)).await.unwrap();
                (status.passes, started.elapsed())
            }
        };
        let (alone, _) = passes(Dispatcher::none()).await;
        let (dispatcher, seen) = recorder(Duration::from_secs(3600));
        let (with_slow, took) = passes(dispatcher).await;
        assert_eq!(with_slow, alone, "as many passes with a plug-in taking an hour per event");
        assert!(took <= poll * 5 + Duration::from_secs(3), "shutdown waits at most DRAIN_GRACE: {took:?}");
        assert!(seen.lock().unwrap().is_empty(), "it was still on its first event");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_the_first_pass_lets_it_finish() {
        let swarm = MemorySwarm::new(seed_swarm());
        swarm.slow_observe(Duration::from_secs(2));
        let (path, config) = setup("shutdown");
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let shutdown = tokio::time::sleep(Duration::from_millis(500));
        let status = run(ctx, path, config, shutdown).await.unwrap();
        assert_eq!(status.passes, 1, "the pass under way finished, and no other started");
        assert_eq!(status.writes, 6, "both clusters' writes were made, not cut off");
        assert!(swarm.service("interlock-proxy-us-east").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_records_its_passes_and_writes_in_the_metrics() {
        use crate::core::metrics::{ExtensionLabels, ObjectKind, Operation, PassLabels, PassResult, WriteLabels};
        let swarm = MemorySwarm::new(seed_swarm());
        // us-west's first write fails: it backs off, then converges.
        swarm.failing("interlock-proxy-us-west", 1);
        let (path, config) = setup("metrics");
        let poll = config.poll_interval;
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let metrics = ctx.metrics.clone();
        let status = run(ctx, path, config, tokio::time::sleep(poll * 4)).await.unwrap();
        let passes = metrics.passes.get_or_create(&PassLabels { result: PassResult::Ok }).get();
        assert_eq!(passes, status.passes, "every pass read the swarm");
        let writes = |operation, kind| metrics.writes.get_or_create(&WriteLabels { operation, kind }).get();
        let by_kind: u64 = [
            writes(Operation::Create, ObjectKind::Config),
            writes(Operation::Create, ObjectKind::Service),
            writes(Operation::Update, ObjectKind::Service),
            writes(Operation::Delete, ObjectKind::Config),
        ]
        .iter()
        .sum();
        assert_eq!(writes(Operation::Create, ObjectKind::Service), 4, "both clusters' proxy and extension");
        // The failed attempt (us-west's first write, its config object) wrote nothing: by kind,
        // the metrics count every write done.
        assert_eq!(by_kind, status.writes, "{status:#?}");
        let last = |extension: &str| {
            metrics.last_success.get(&ExtensionLabels { extension: extension.into() }).map(|g| g.get())
        };
        assert!(last("us-east").is_some_and(|t| t > 0) && last("us-west").is_some_and(|t| t > 0));
        let encoded = metrics.encode();
        assert!(encoded.contains("interlock_quarantined_services{extension=\"us-west\"} 0\n"), "{encoded}");
    }

    /// Extensions saying, a hundred times a second, that a task is ahead of the served config
    /// (what a token holder could send): at most one extra pass a second.
    #[tokio::test(start_paused = true)]
    async fn tasks_reported_ahead_wake_at_most_one_pass_a_second() {
        let swarm = MemorySwarm::new(seed_swarm());
        let (path, config) = setup("behind");
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let deliveries = ctx.deliveries.clone();
        let watcher = swarm.clone();
        let shutdown = async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (reads, _) = watcher.requests();
            for _ in 0..1_000 {
                deliveries.wake_behind();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let passes = (watcher.requests().0 - reads) / 6;
            // 10 s: ten woken passes, and the PollInterval's (3 s) at most.
            assert!(passes <= 14, "{passes} passes in 10 s");
        };
        run(ctx, path, config, shutdown).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_reads_every_poll_interval_and_writes_nothing() {
        let swarm = MemorySwarm::new(seed_swarm());
        let (path, config) = setup("idle");
        let poll = config.poll_interval;
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let watcher = swarm.clone();
        let shutdown = async move {
            tokio::time::sleep(poll * 2).await;
            let (_, writes) = watcher.requests();
            tokio::time::sleep(poll * 5).await;
            assert_eq!(watcher.requests().1, writes, "no write while nothing changes");
        };
        let status = run(ctx, path, config, shutdown).await.unwrap();
        assert!(status.passes >= 6, "{} passes in 7 poll intervals", status.passes);
    }

    #[tokio::test(start_paused = true)]
    async fn a_config_edit_is_picked_up_and_an_invalid_one_is_ignored() {
        let swarm = MemorySwarm::new(seed_swarm());
        let (path, config) = setup("edit");
        let poll = config.poll_interval;
        let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
        let (file, watcher) = (path.clone(), swarm.clone());
        let shutdown = async move {
            tokio::time::sleep(poll * 2).await;
            let text = std::fs::read_to_string(&file).unwrap();
            // An invalid edit: nothing changes.
            std::fs::write(&file, text.replace("PublishMode = \"host\"", "PublishMode = \"bridge\"")).unwrap();
            tokio::time::sleep(poll * 2).await;
            let east = watcher.service("interlock-proxy-us-east").unwrap();
            assert!(east.def.constraints.is_empty());
            // A valid one: us-east's proxy is placed by it.
            let placed = text.replace(
                "ServiceCluster = \"us-east\"\n",
                "ServiceCluster = \"us-east\"\n    ProxyConstraints = [\"node.labels.region==us-east\"]\n",
            );
            std::fs::write(&file, placed).unwrap();
            tokio::time::sleep(poll * 2).await;
            let east = watcher.service("interlock-proxy-us-east").unwrap();
            assert_eq!(east.def.constraints, ["node.labels.region==us-east"]);
        };
        run(ctx, path, config, shutdown).await.unwrap();
    }
}
