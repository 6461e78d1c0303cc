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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reconcilers::config::{self, Config};
use reconcilers::swarm::ObjectKind;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::docker::DockerClient;
use crate::reconcile::Reconciler;

/// How often to look again while app tasks are starting.
const FAST_POLL: Duration = Duration::from_millis(250);
/// How long to gather a burst of triggers into one pass.
const COALESCE: Duration = Duration::from_millis(20);

/// Why the loop was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Event,
    /// The event stream (re)connected: anything may have been missed.
    Resync,
}

/// Counters of what the loop did, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct LoopStats {
    pub passes: u64,
    pub writes: u64,
}

/// Errors that stop the loop.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs until `shutdown` completes (the binary passes SIGTERM/SIGINT), then finishes the
/// current pass and returns what it did.
pub async fn run(
    path: PathBuf,
    mut config: Config,
    docker: DockerClient,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<LoopStats, ControllerError> {
    tokio::pin!(shutdown);
    let status = crate::status::SharedStatus::default();
    let server = tokio::spawn(crate::status::serve(config.listen_addr.bind_addr(), status.clone()));
    let checker = std::sync::Arc::new(crate::proxycheck::ProxyChecker::discover());
    let mut reconciler = Reconciler::new(docker.clone(), reconcilers::desired::Environment::new(&config), checker);
    let (tx, mut rx) = mpsc::channel::<Trigger>(256);
    let watcher = tokio::spawn(watch_events(docker.clone(), tx));
    let mut hup = signal(SignalKind::hangup()).map_err(ControllerError::Signals)?;
    let mut file = FileState::read(&path);
    let mut stats = LoopStats::default();
    let mut next_poll = Instant::now();
    info!(config = %path.display(), poll = ?config.poll_interval, "running");
    loop {
        let now = Instant::now();
        if now >= next_poll {
            // Cheap: a stat and, only when it changed, a read.
            if file.changed(&path) {
                reload(&path, &mut config, &mut reconciler);
            }
            let settling = pass(&mut reconciler, &config, &mut stats, &status).await;
            let interval = if settling > 0 { FAST_POLL.min(config.poll_interval) } else { config.poll_interval };
            next_poll = Instant::now() + interval;
            continue;
        }
        let wake = reconciler.next_retry().map_or(next_poll, |retry| retry.min(next_poll));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {
                if wake < next_poll { next_poll = Instant::now(); }
            }
            trigger = rx.recv() => {
                let Some(trigger) = trigger else { break };
                // Gather the rest of a burst.
                tokio::time::sleep(COALESCE).await;
                while rx.try_recv().is_ok() {}
                debug!(?trigger, "woken");
                next_poll = Instant::now();
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", path.display());
                file = FileState::read(&path);
                reload(&path, &mut config, &mut reconciler);
                next_poll = Instant::now();
            }
            () = &mut shutdown => { info!("stopping"); break; }
        }
    }
    watcher.abort();
    server.abort();
    info!(passes = stats.passes, writes = stats.writes, "stopped");
    Ok(stats)
}

/// One pass; returns how many app services are still starting tasks.
async fn pass(
    reconciler: &mut Reconciler,
    config: &Config,
    stats: &mut LoopStats,
    status: &crate::status::SharedStatus,
) -> usize {
    stats.passes += 1;
    let counters = reconciler.docker().counters();
    let (reads_before, writes_before) = (counters.reads(), counters.writes());
    let result = reconciler.pass(config).await;
    let counters = reconciler.docker().counters();
    debug!(reads = counters.reads() - reads_before, writes = counters.writes() - writes_before, "pass requests");
    match result {
        Ok(report) => {
            stats.writes += report.writes as u64;
            if report.writes > 0 {
                info!(writes = report.writes, "pass wrote");
            }
            for (extension, failure) in &report.failures {
                warn!(extension = %extension, "{failure}");
            }
            crate::status::record(status, &report.plan, &report.failures, report.writes);
            report.apps_settling
        }
        Err(e) => {
            error!("{e}");
            0
        }
    }
}

fn reload(path: &Path, config: &mut Config, reconciler: &mut Reconciler) {
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
            if loaded.config != *config {
                info!("config changed: converging to it");
                *reconciler = Reconciler::new(
                    reconciler.docker().clone(),
                    reconcilers::desired::Environment::new(&loaded.config),
                    reconciler.checker().clone(),
                );
                *config = loaded.config;
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

/// Forwards swarm events as triggers; reconnects with backoff and asks for a full pass on every
/// (re)connect, since events may have been missed.
async fn watch_events(docker: DockerClient, tx: mpsc::Sender<Trigger>) {
    let kinds = [ObjectKind::Service, ObjectKind::Node, ObjectKind::Network, ObjectKind::Config, ObjectKind::Secret];
    let mut failures: u32 = 0;
    loop {
        let mut events = Box::pin(docker.events(&kinds));
        if tx.send(Trigger::Resync).await.is_err() {
            return;
        }
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    failures = 0;
                    debug!(kind = ?event.kind, action = %event.action, name = ?event.name, "event");
                    if tx.try_send(Trigger::Event).is_err() && tx.is_closed() {
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
        let delay = crate::reconcile::backoff_delay(failures, 1.0).min(Duration::from_secs(30));
        debug!(?delay, "event stream ended; reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn termination() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install SIGTERM/SIGINT handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
