//! Plug-ins: code that reacts to what happens in the swarm and in interlock, beside routing
//! (the core's plug-in dispatcher and its plug-ins).
//!
//! Interlock 0.3's model (`docs/plugins.md`): every event is dispatched to every
//! enabled plug-in. Here each plug-in gets its own task and its own bounded queue
//! ([`Dispatcher`]), so a slow or failing plug-in is logged and retried, and never delays a
//! pass, a route or another plug-in: when its queue is full, the oldest events are dropped and
//! counted. Adding a plug-in is one module beside this one, implementing [`Plugin`], plus one
//! entry in [`list`] and one arm in [`by_name`].
//!
//! Two hosts feed a [`Dispatcher`]:
//! - `interlock start` (Interlock 0.3's command line): [`host`] dispatches `interlock-start`,
//!   then every event of the engine (all types), resubscribing on error, then `interlock-stop`.
//! - `interlock run` with `[Plugins]` in the TOML: `core::controller::run` dispatches
//!   `interlock-start`, the swarm events its loop watches, one [`PluginEvent::Pass`] per
//!   extension after each pass, and `interlock-stop`.
//!
//! # Rules a plug-in can rely on
//! - [`Plugin::handle`] is called for one event at a time, in order, on the plug-in's own task.
//! - A failed `handle` is retried ([`RETRIES`] times, backoff from [`RETRY_BASE`]), then the
//!   event is skipped; a `handle` running longer than [`HANDLE_TIMEOUT`] counts as failed.
//! - A panic in `handle` is caught: logged, the event skipped, the plug-in keeps running.
//! - At shutdown the queue is drained for at most the grace the host gives ([`DRAIN_GRACE`]).

pub mod carbon;
pub mod example;

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::carbon::{CarbonSettings, CarbonSink};
use crate::retry::{Backoff, RESUBSCRIBE};
use crate::swarm::EngineEvent;

/// Events a plug-in's queue holds before the oldest are dropped.
pub const QUEUE_CAPACITY: usize = 1024;
/// Retries of a failed [`Plugin::handle`] before the event is skipped.
pub const RETRIES: u32 = 3;
/// The first retry's delay; each next one doubles it.
pub const RETRY_BASE: Duration = Duration::from_millis(200);
/// The waits between a failed event's attempts: [`RETRY_BASE`], doubling.
const RETRY_BACKOFF: Backoff = Backoff::new(RETRY_BASE, Duration::MAX);
/// A `handle` still running after this has failed.
pub const HANDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a host lets the queues drain at shutdown.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A full queue logs its drops once per this many.
const DROP_LOG_EVERY: u64 = 1000;

/// The synthetic event every host dispatches first (Interlock 0.3's name).
pub const INTERLOCK_START: &str = "interlock-start";
/// The synthetic event every host dispatches last.
pub const INTERLOCK_STOP: &str = "interlock-stop";

/// What plug-ins are told about.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginEvent {
    /// A Docker event from the engine interlock is connected to.
    Docker {
        /// `container`, `service`, `node`, `network`, ...
        kind: String,
        /// `start`, `die`, `create`, `update`, ...
        action: String,
        /// The object's ID.
        id: String,
        /// The object's name, when the event carries one.
        name: Option<String>,
        /// Unix nanoseconds.
        time: u128,
    },
    /// interlock itself: `interlock-start` when it starts, `interlock-stop` when it stops.
    Interlock { action: &'static str, time: u128 },
    /// One extension's state after a pass.
    Pass {
        extension: String,
        /// Hosts routed, backends (task addresses) behind them, quarantined services.
        routes: usize,
        backends: usize,
        quarantined: usize,
        /// How long the pass took.
        duration: Duration,
        /// Whether this pass changed the cluster's proxy config.
        routes_changed: bool,
        time: u128,
    },
}

impl PluginEvent {
    /// The event's name as Interlock 0.3 logged it (`event=…`): the Docker action, or
    /// `interlock-start` / `interlock-stop`, or `interlock-pass`.
    pub fn name(&self) -> &str {
        match self {
            PluginEvent::Docker { action, .. } => action,
            PluginEvent::Interlock { action, .. } => action,
            PluginEvent::Pass { .. } => "interlock-pass",
        }
    }

    /// Unix nanoseconds.
    pub fn time(&self) -> u128 {
        match self {
            PluginEvent::Docker { time, .. } | PluginEvent::Interlock { time, .. } | PluginEvent::Pass { time, .. } => {
                *time
            }
        }
    }

    pub fn interlock(action: &'static str) -> Self {
        PluginEvent::Interlock { action, time: now_nanos() }
    }

    /// `interlock-start`, now.
    pub fn start() -> Self {
        Self::interlock(INTERLOCK_START)
    }

    /// `interlock-stop`, now.
    pub fn stop() -> Self {
        Self::interlock(INTERLOCK_STOP)
    }
}

impl From<EngineEvent> for PluginEvent {
    fn from(event: EngineEvent) -> Self {
        let EngineEvent { kind, action, id, name, time } = event;
        PluginEvent::Docker { kind, action, id, name, time }
    }
}

/// Unix nanoseconds now.
pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Why a plug-in could not be built or could not handle an event. The dispatcher logs a
/// handling failure and retries.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{plugin}: {reason}")]
    Failed { plugin: &'static str, reason: String },
    /// `--plugin NAME` or `[Plugins] Enabled` named no plug-in.
    #[error("unknown plug-in {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    /// The plug-in needs settings that were not given.
    #[error("plug-in {plugin}: {reason}")]
    NotConfigured { plugin: &'static str, reason: String },
}

/// A boxed future, so plug-ins can be held as trait objects.
pub type Handling<'a> = Pin<Box<dyn Future<Output = Result<(), PluginError>> + Send + 'a>>;

/// A plug-in. `handle` is called for every event, one at a time per plug-in, on the plug-in's
/// own task.
pub trait Plugin: Send + Sync + 'static {
    /// The name `--plugin` and the TOML use.
    fn name(&self) -> &'static str;
    fn version(&self) -> &'static str;
    fn handle<'a>(&'a self, event: &'a PluginEvent) -> Handling<'a>;
}

// ---------------------------------------------------------------------------------------------
// The registry: names, `list-plugins`, construction.

/// What `list-plugins` prints about a plug-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: &'static str,
    /// Other names accepted for it (Interlock 0.3's).
    pub aliases: &'static [&'static str],
    pub version: &'static str,
    pub description: &'static str,
}

/// Every plug-in this build has, in `list-plugins` order.
pub fn list() -> &'static [PluginInfo] {
    &[
        PluginInfo {
            name: example::NAME,
            aliases: &[],
            version: example::VERSION,
            description: "logs every event it receives",
        },
        PluginInfo {
            name: carbon::NAME,
            aliases: &[carbon::ALIAS],
            version: carbon::VERSION,
            description: "sends container statistics from every node, and interlock's own, to Carbon (Graphite)",
        },
    ]
}

/// The plug-in `name` (or an alias of it) stands for, in any case.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    list()
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name) || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .map(|p| p.name)
}

/// Settings of the plug-ins that need some. Read from the environment by `interlock start`
/// (Interlock 0.3's `STATS_*`), from `[Plugins]` by `interlock run` ([`PluginSettings::from_config`]).
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    /// `carbon`: where and what to send. `None`: not configured (carbon cannot run).
    pub carbon: Option<CarbonSettings>,
    /// `carbon`: a connection to Carbon already open, to share (`interlock start` sends its
    /// engine's container statistics over it too); `None`: the plug-in opens its own.
    pub carbon_sink: Option<CarbonSink>,
}

impl PluginSettings {
    /// The settings `[Plugins]` gives.
    pub fn from_config(config: &reconcilers::config::Config) -> Self {
        let carbon = config.plugins.carbon.as_ref().map(|c| CarbonSettings {
            address: c.address.clone(),
            prefix: c.prefix.clone(),
            image_name_filter: c.image_name_filter.clone(),
            interval: c.interval,
        });
        Self { carbon, carbon_sink: None }
    }
}

/// Builds the plug-in `name` (or an alias) with `settings`.
pub fn by_name(name: &str, settings: &PluginSettings) -> Result<Box<dyn Plugin>, PluginError> {
    match canonical_name(name) {
        Some(example::NAME) => Ok(Box::new(example::Example)),
        Some(carbon::NAME) => {
            let shared_sink = settings.carbon_sink.clone();
            let Some(settings) = &settings.carbon else {
                return Err(PluginError::NotConfigured {
                    plugin: carbon::NAME,
                    reason: "no Carbon address: set STATS_CARBON_ADDRESS=HOST:PORT (or [Plugins.Carbon] Address in the TOML)"
                        .to_owned(),
                });
            };
            match shared_sink {
                Some(sink) => Ok(Box::new(carbon::Carbon::with_sink(settings.clone(), sink)?)),
                None => Ok(Box::new(carbon::Carbon::new(settings.clone())?)),
            }
        }
        _ => Err(PluginError::Unknown { name: name.to_owned(), known: known_names() }),
    }
}

/// Builds every plug-in in `names`, each once (an alias of one already built is skipped).
pub fn build(names: &[String], settings: &PluginSettings) -> Result<Vec<Box<dyn Plugin>>, PluginError> {
    let mut built: Vec<Box<dyn Plugin>> = Vec::new();
    for name in names {
        if canonical_name(name).is_some_and(|n| built.iter().any(|p| p.name() == n)) {
            warn!("plug-in {name} is given twice: it runs once");
            continue;
        }
        built.push(by_name(name, settings)?);
    }
    Ok(built)
}

/// Every name `--plugin` accepts, aliases in brackets: `example, carbon (stats)`.
pub fn known_names() -> String {
    let names: Vec<String> =
        list()
            .iter()
            .map(|p| {
                if p.aliases.is_empty() { p.name.to_owned() } else { format!("{} ({})", p.name, p.aliases.join(", ")) }
            })
            .collect();
    names.join(", ")
}

// ---------------------------------------------------------------------------------------------
// The dispatcher.

/// What happened to one plug-in's events so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Events `handle` accepted (first time or on a retry).
    pub handled: u64,
    /// Retries made.
    pub retried: u64,
    /// Events given up after every retry failed.
    pub skipped: u64,
    /// Events whose `handle` panicked (skipped).
    pub panicked: u64,
    /// Events dropped unhandled because the queue was full (the oldest first), or left in it
    /// when the drain at shutdown ran out of time.
    pub dropped: u64,
}

/// Runs each plug-in on its own task behind its own bounded queue. [`dispatch`](Self::dispatch)
/// never blocks and never waits for a plug-in. Needs a tokio runtime to be built (unless empty).
pub struct Dispatcher {
    slots: Vec<Slot>,
}

struct Slot {
    name: &'static str,
    version: &'static str,
    queue: Arc<Queue>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// One plug-in's queue: a ring of events, the worker's wake-up, the counters.
struct Queue {
    state: Mutex<QueueState>,
    wake: Notify,
    capacity: usize,
    handled: AtomicU64,
    retried: AtomicU64,
    skipped: AtomicU64,
    panicked: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Arc<PluginEvent>>,
    closed: bool,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::none()
    }
}

impl Dispatcher {
    /// No plug-in: dispatching does nothing.
    pub fn none() -> Self {
        Self { slots: Vec::new() }
    }

    /// One task and one queue of [`QUEUE_CAPACITY`] events per plug-in, started now.
    pub fn new(plugins: Vec<Box<dyn Plugin>>) -> Self {
        Self::with_capacity(plugins, QUEUE_CAPACITY)
    }

    /// [`new`](Self::new) with queues of `capacity` events (at least one).
    pub fn with_capacity(plugins: Vec<Box<dyn Plugin>>, capacity: usize) -> Self {
        let slots = plugins
            .into_iter()
            .map(|plugin| {
                let queue = Arc::new(Queue {
                    state: Mutex::new(QueueState::default()),
                    wake: Notify::new(),
                    capacity: capacity.max(1),
                    handled: AtomicU64::new(0),
                    retried: AtomicU64::new(0),
                    skipped: AtomicU64::new(0),
                    panicked: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                });
                let (name, version) = (plugin.name(), plugin.version());
                let task = tokio::spawn(work(plugin, queue.clone()));
                Slot { name, version, queue, task: Mutex::new(Some(task)) }
            })
            .collect();
        Self { slots }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The plug-ins, as `(name, version)`, in the order given.
    pub fn plugins(&self) -> Vec<(&'static str, &'static str)> {
        self.slots.iter().map(|s| (s.name, s.version)).collect()
    }

    /// Queues `event` for every plug-in and returns at once. A full queue drops its oldest
    /// event (counted, and logged once per thousand). After [`close`](Self::close), nothing.
    pub fn dispatch(&self, event: PluginEvent) {
        if self.slots.is_empty() {
            return;
        }
        let event = Arc::new(event);
        for slot in &self.slots {
            let dropped = {
                let mut state = slot.queue.state.lock().expect("plugin queue lock");
                if state.closed {
                    continue;
                }
                state.events.push_back(event.clone());
                let mut dropped = 0;
                while state.events.len() > slot.queue.capacity {
                    state.events.pop_front();
                    dropped += 1;
                }
                dropped
            };
            slot.queue.wake.notify_one();
            if dropped > 0 {
                let before = slot.queue.dropped.fetch_add(dropped, Ordering::Relaxed);
                if before / DROP_LOG_EVERY != (before + dropped) / DROP_LOG_EVERY || before == 0 {
                    warn!(
                        "plugin {} is behind: its queue of {} events is full, dropping the oldest ({} dropped so far)",
                        slot.name,
                        slot.queue.capacity,
                        before + dropped
                    );
                }
            }
        }
    }

    /// Per plug-in, what happened to its events so far.
    pub fn stats(&self) -> Vec<(&'static str, PluginStats)> {
        self.slots.iter().map(|s| (s.name, s.queue.stats())).collect()
    }

    /// Stops taking events, lets every queue drain for at most `grace`, then stops the
    /// plug-ins' tasks (what is left is counted as dropped). Returns the final counts.
    pub async fn close(&self, grace: Duration) -> Vec<(&'static str, PluginStats)> {
        for slot in &self.slots {
            slot.queue.state.lock().expect("plugin queue lock").closed = true;
            slot.queue.wake.notify_one();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for slot in &self.slots {
            let Some(mut task) = slot.task.lock().expect("plugin task lock").take() else { continue };
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let left = slot.queue.state.lock().expect("plugin queue lock").events.drain(..).count() as u64;
                slot.queue.dropped.fetch_add(left, Ordering::Relaxed);
                warn!(
                    "plugin {} did not finish within {} ms: stopped with {left} event(s) unhandled",
                    slot.name,
                    grace.as_millis()
                );
            }
        }
        self.stats()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(task) = slot.task.lock().map(|mut t| t.take()).unwrap_or(None) {
                task.abort();
            }
        }
    }
}

impl Queue {
    /// The next event; `None` once closed and empty.
    async fn next(&self) -> Option<Arc<PluginEvent>> {
        loop {
            {
                let mut state = self.state.lock().expect("plugin queue lock");
                if let Some(event) = state.events.pop_front() {
                    return Some(event);
                }
                if state.closed {
                    return None;
                }
            }
            // A notification sent between the check and here is kept as a permit.
            self.wake.notified().await;
        }
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            handled: self.handled.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A plug-in's task: its events, one at a time, until its queue is closed and empty.
async fn work(plugin: Box<dyn Plugin>, queue: Arc<Queue>) {
    while let Some(event) = queue.next().await {
        deliver(plugin.as_ref(), &queue, &event).await;
    }
}

/// One event to one plug-in: retried with backoff on failure, skipped after [`RETRIES`]
/// retries, skipped at once on a panic.
async fn deliver(plugin: &dyn Plugin, queue: &Queue, event: &PluginEvent) {
    let (name, version) = (plugin.name(), plugin.version());
    // Interlock 0.3 logged this for every event; the seed shows it for interlock-start.
    if matches!(event, PluginEvent::Interlock { .. }) {
        info!("[interlock] dispatching event to plugin: name={name} version={version}");
    } else {
        debug!("[interlock] dispatching event to plugin: name={name} version={version}");
    }
    let mut attempt = 0;
    loop {
        // The call itself is inside the guarded future: a panic building it is caught too.
        let handling = AssertUnwindSafe(async { plugin.handle(event).await }).catch_unwind();
        let reason = match tokio::time::timeout(HANDLE_TIMEOUT, handling).await {
            Ok(Ok(Ok(()))) => {
                queue.handled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(panic)) => {
                queue.panicked.fetch_add(1, Ordering::Relaxed);
                error!(
                    "plugin {name} panicked handling event {}: {}; event skipped, the plug-in keeps running",
                    event.name(),
                    panic_message(panic.as_ref())
                );
                return;
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Err(_) => format!("no answer within {} s", HANDLE_TIMEOUT.as_secs()),
        };
        if attempt >= RETRIES {
            queue.skipped.fetch_add(1, Ordering::Relaxed);
            error!("plugin {name}: event {} skipped after {} attempts: {reason}", event.name(), attempt + 1);
            return;
        }
        let delay = RETRY_BACKOFF.delay(attempt + 1);
        warn!("plugin {name}: event {}: {reason}; retrying in {} ms", event.name(), delay.as_millis());
        attempt += 1;
        queue.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

// ---------------------------------------------------------------------------------------------
// The host of `interlock start`.

/// Interlock 0.3's plug-in host: dispatches `interlock-start`, then every event of the streams
/// `subscribe` returns (a new one after an error or an end, with backoff up to 30 s), until
/// `shutdown`; then `interlock-stop`, and drains the queues for at most [`DRAIN_GRACE`].
pub async fn host<S, T, E>(
    dispatcher: &Dispatcher,
    mut subscribe: impl FnMut() -> S,
    shutdown: impl Future<Output = ()>,
) -> Vec<(&'static str, PluginStats)>
where
    S: Stream<Item = Result<T, E>>,
    T: Into<PluginEvent>,
    E: std::fmt::Display,
{
    tokio::pin!(shutdown);
    dispatcher.dispatch(PluginEvent::start());
    let mut failures: u32 = 0;
    'subscribe: loop {
        let events = subscribe();
        tokio::pin!(events);
        loop {
            tokio::select! {
                () = &mut shutdown => break 'subscribe,
                item = events.next() => match item {
                    Some(Ok(event)) => {
                        failures = 0;
                        dispatcher.dispatch(event.into());
                    }
                    Some(Err(e)) => {
                        warn!("event stream: {e}");
                        break;
                    }
                    None => {
                        debug!("event stream ended");
                        break;
                    }
                },
            }
        }
        failures += 1;
        let delay = RESUBSCRIBE.delay(failures);
        debug!(?delay, "resubscribing to events");
        tokio::select! {
            () = &mut shutdown => break 'subscribe,
            () = tokio::time::sleep(delay) => {}
        }
    }
    dispatcher.dispatch(PluginEvent::stop());
    dispatcher.close(DRAIN_GRACE).await
}

#[cfg(test)]
mod tests {
    //! The dispatcher's isolation rules, in paused time.

    use std::sync::atomic::AtomicU32;

    use tokio::time::Instant;

    use super::*;

    /// Records what it handled; sleeps `delay` per event; fails an event named in `failing`
    /// `fails` times; panics on `"boom"`; waits for `gate` permits when given.
    struct Probe {
        name: &'static str,
        delay: Duration,
        failing: &'static str,
        fails: u32,
        attempts: AtomicU32,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        /// Never answers for this event.
        hang_on: &'static str,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Probe {
        fn new(name: &'static str) -> (Self, Arc<Mutex<Vec<String>>>) {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let probe = Probe {
                name,
                delay: Duration::ZERO,
                failing: "",
                fails: 0,
                attempts: AtomicU32::new(0),
                gate: None,
                hang_on: "",
                seen: seen.clone(),
            };
            (probe, seen)
        }
    }

    impl Plugin for Probe {
        fn name(&self) -> &'static str {
            self.name
        }

        fn version(&self) -> &'static str {
            "test"
        }

        fn handle<'a>(&'a self, event: &'a PluginEvent) -> Handling<'a> {
            Box::pin(async move {
                if let Some(gate) = &self.gate {
                    gate.acquire().await.expect("gate").forget();
                }
                tokio::time::sleep(self.delay).await;
                if event.name() == self.hang_on {
                    std::future::pending::<()>().await;
                }
                if event.name() == "boom" {
                    panic!("boom");
                }
                if event.name() == self.failing && self.attempts.fetch_add(1, Ordering::SeqCst) < self.fails {
                    return Err(PluginError::Failed { plugin: "probe", reason: "refused".into() });
                }
                self.seen.lock().unwrap().push(event.name().to_owned());
                Ok(())
            })
        }
    }

    fn docker(action: &str) -> PluginEvent {
        PluginEvent::Docker { kind: "container".into(), action: action.into(), id: "c1".into(), name: None, time: 1 }
    }

    fn seen(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        seen.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_plugin_delays_neither_another_nor_the_caller() {
        let (mut slow, slow_seen) = Probe::new("slow");
        slow.delay = Duration::from_secs(10);
        let (fast, fast_seen) = Probe::new("fast");
        let dispatcher = Dispatcher::new(vec![Box::new(slow), Box::new(fast)]);
        let started = Instant::now();
        for i in 0..5 {
            dispatcher.dispatch(docker(&format!("e{i}")));
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "dispatch never waits");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(seen(&fast_seen), ["e0", "e1", "e2", "e3", "e4"]);
        assert!(seen(&slow_seen).is_empty());
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(seen(&slow_seen), ["e0", "e1", "e2", "e3", "e4"], "in order, one at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_event_is_retried_with_backoff_then_skipped() {
        let (mut probe, probe_seen) = Probe::new("flaky");
        probe.failing = "bad";
        probe.fails = u32::MAX;
        let (other, other_seen) = Probe::new("other");
        let dispatcher = Dispatcher::new(vec![Box::new(probe), Box::new(other)]);
        dispatcher.dispatch(docker("bad"));
        dispatcher.dispatch(docker("good"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(seen(&other_seen), ["bad", "good"], "the other plug-in is not held up");
        // Backoff 200 + 400 + 800 ms: still retrying at 1.3 s, done by 1.5 s.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(seen(&probe_seen).is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen(&probe_seen), ["good"], "the failing event is skipped, the next one handled");
        let stats = dispatcher.stats()[0].1;
        assert_eq!((stats.retried, stats.skipped, stats.handled), (RETRIES as u64, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_that_fails_then_succeeds_is_handled_once() {
        let (mut probe, probe_seen) = Probe::new("flaky");
        probe.failing = "bad";
        probe.fails = 2;
        let dispatcher = Dispatcher::new(vec![Box::new(probe)]);
        dispatcher.dispatch(docker("bad"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(seen(&probe_seen), ["bad"]);
        let stats = dispatcher.stats()[0].1;
        assert_eq!((stats.retried, stats.skipped, stats.handled), (2, 0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_oldest_and_counts() {
        let (mut probe, probe_seen) = Probe::new("blocked");
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        probe.gate = Some(gate.clone());
        let dispatcher = Dispatcher::with_capacity(vec![Box::new(probe)], 4);
        dispatcher.dispatch(docker("e0"));
        // The worker takes e0 and waits at the gate; e1..e10 fill a queue of 4.
        tokio::time::sleep(Duration::from_millis(1)).await;
        for i in 1..=10 {
            dispatcher.dispatch(docker(&format!("e{i}")));
        }
        assert_eq!(dispatcher.stats()[0].1.dropped, 6);
        gate.add_permits(100);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(seen(&probe_seen), ["e0", "e7", "e8", "e9", "e10"], "the newest are kept");
        assert_eq!(dispatcher.stats()[0].1, PluginStats { handled: 5, dropped: 6, ..PluginStats::default() });
    }

    #[tokio::test(start_paused = true)]
    async fn a_handle_that_never_answers_times_out_like_a_failure() {
        let (mut probe, probe_seen) = Probe::new("stuck");
        probe.hang_on = "hang";
        let dispatcher = Dispatcher::new(vec![Box::new(probe)]);
        dispatcher.dispatch(docker("hang"));
        dispatcher.dispatch(docker("next"));
        // Four attempts of 30 s, and 1.4 s of backoff between them.
        tokio::time::sleep(HANDLE_TIMEOUT * 4 + Duration::from_millis(1300)).await;
        assert!(seen(&probe_seen).is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen(&probe_seen), ["next"]);
        assert_eq!(dispatcher.stats()[0].1.skipped, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_contained_and_the_plugin_keeps_running() {
        let (probe, probe_seen) = Probe::new("fragile");
        let dispatcher = Dispatcher::new(vec![Box::new(probe)]);
        dispatcher.dispatch(docker("boom"));
        dispatcher.dispatch(docker("after"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(seen(&probe_seen), ["after"]);
        assert_eq!(dispatcher.stats()[0].1.panicked, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn close_drains_within_the_grace_then_stops_a_stuck_plugin() {
        let (mut slow, slow_seen) = Probe::new("slow");
        slow.delay = Duration::from_millis(600);
        let (fast, fast_seen) = Probe::new("fast");
        let dispatcher = Dispatcher::new(vec![Box::new(slow), Box::new(fast)]);
        for i in 0..10 {
            dispatcher.dispatch(docker(&format!("e{i}")));
        }
        let started = Instant::now();
        let stats = dispatcher.close(Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2), "bounded by the grace");
        assert_eq!(seen(&fast_seen).len(), 10, "a quick plug-in drains its queue");
        assert_eq!(seen(&slow_seen), ["e0", "e1", "e2"], "600 ms each: three in 2 s");
        assert_eq!(stats[0].1.dropped, 6, "e4..e9 never started (e3 was cut off)");
        dispatcher.dispatch(docker("late"));
        assert_eq!(seen(&fast_seen).len(), 10, "nothing is taken after close");
    }

    #[tokio::test(start_paused = true)]
    async fn the_host_dispatches_start_first_resubscribes_and_stop_last() {
        let (probe, probe_seen) = Probe::new("probe");
        let dispatcher = Dispatcher::new(vec![Box::new(probe)]);
        let subscriptions = Arc::new(AtomicU32::new(0));
        let counter = subscriptions.clone();
        let subscribe = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            // The first stream gives one event then fails; the next ones give one each, then end.
            let items: Vec<Result<PluginEvent, String>> = if n == 0 {
                vec![Ok(docker("create")), Err("connection reset".into())]
            } else {
                vec![Ok(docker(&format!("again{n}")))]
            };
            futures_util::stream::iter(items)
        };
        let shutdown = tokio::time::sleep(Duration::from_millis(2500));
        host(&dispatcher, subscribe, shutdown).await;
        let names = seen(&probe_seen);
        assert_eq!(names.first().map(String::as_str), Some(INTERLOCK_START));
        assert_eq!(names.last().map(String::as_str), Some(INTERLOCK_STOP));
        assert_eq!(names[1], "create");
        assert!(names.contains(&"again1".to_owned()), "resubscribed after the error: {names:?}");
        assert!(subscriptions.load(Ordering::SeqCst) >= 2);
    }

    /// Streams that fail at once, every time: resubscribed after 1, 2, 4, 8, 16 s (then 30 s),
    /// so at 0, 1, 3, 7, 15 and 31 s in 60 s, the next one at 61 s.
    #[tokio::test(start_paused = true)]
    async fn a_stream_that_always_fails_is_resubscribed_with_backoff() {
        let dispatcher = Dispatcher::new(vec![]);
        let subscriptions = Arc::new(AtomicU32::new(0));
        let counter = subscriptions.clone();
        let subscribe = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            futures_util::stream::iter([Err::<PluginEvent, _>("connection refused")])
        };
        let started = Instant::now();
        host(&dispatcher, subscribe, tokio::time::sleep(Duration::from_secs(60))).await;
        assert_eq!(started.elapsed(), Duration::from_secs(60), "shutdown ends the host at once");
        let n = subscriptions.load(Ordering::SeqCst);
        assert!((3..=6).contains(&n), "{n} subscriptions in 60 s");
    }

    #[test]
    fn names_resolve_with_aliases_and_any_case() {
        assert_eq!(canonical_name("example"), Some("example"));
        assert_eq!(canonical_name("stats"), Some("carbon"));
        assert_eq!(canonical_name("Carbon"), Some("carbon"));
        assert_eq!(canonical_name("haproxy"), None);
        let Err(e) = by_name("haproxy", &PluginSettings::default()) else { panic!("haproxy is no plug-in") };
        assert_eq!(e.to_string(), "unknown plug-in \"haproxy\" (known: example, carbon (stats))");
        let Err(e) = by_name("stats", &PluginSettings::default()) else { panic!("carbon needs an address") };
        assert!(e.to_string().contains("STATS_CARBON_ADDRESS"), "{e}");
    }

    #[test]
    fn the_toml_accepts_exactly_the_registry_names() {
        let mut registry: Vec<&str> =
            list().iter().flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied())).collect();
        let mut toml = reconcilers::config::Config::KNOWN_PLUGINS.to_vec();
        registry.sort_unstable();
        toml.sort_unstable();
        assert_eq!(registry, toml);
    }
}
