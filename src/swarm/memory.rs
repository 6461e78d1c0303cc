//! An in-memory [`Swarm`] for the loop's unit tests, with fault injection: writes that are slow,
//! that fail, or that lose Swarm's optimistic lock, per object name. It applies writes the way a
//! perfect Swarm would (the model is the core's in-memory apply in `desired/tests.rs`), counts
//! requests, emits an event per write, and records how many writes ran at once per extension, so
//! "at most one writer per cluster" can be asserted. It never stands in for the lab's end-to-end
//! proof.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use reconcilers::observed::{
    ConfigDef, ConfigFacts, EngineFacts, NetworkDef, NetworkFacts, NodeFacts, ObjectKind, Observed, SecretDef,
    ServiceDef, ServiceFacts, SwarmEvent, SwarmMembership,
};
use reconcilers::ownership::LABEL_EXTENSION;
use tokio::sync::broadcast;

use super::{EngineEvent, OwnContainer, Swarm, SwarmError};

/// What goes wrong with writes to objects whose name (a node's: its hostname) contains
/// `name_part`.
#[derive(Debug, Clone)]
struct Fault {
    name_part: String,
    delay: Duration,
    /// Fail this many more times with a 500 (`u32::MAX`: always).
    failures: u32,
    /// The next update loses the optimistic lock, as if someone else wrote first.
    out_of_sequence: bool,
}

#[derive(Default)]
struct State {
    observed: Observed,
    next_id: u64,
    faults: Vec<Fault>,
    /// Writes running now, and the most ever running at once, per extension.
    running: BTreeMap<String, usize>,
    most_at_once: BTreeMap<String, usize>,
    /// Every write attempted, as `"op name"`, in order.
    attempts: Vec<String>,
    observe_delay: Duration,
    /// Reading the swarm fails (the engine answers 503).
    observe_failing: bool,
    /// Subscribing to events fails at once.
    events_failing: bool,
    /// What [`Swarm::task_logs`] answers, by task ID.
    task_logs: BTreeMap<String, String>,
    /// How many times [`Swarm::task_logs`] was called.
    task_log_reads: u64,
}

/// A swarm in memory. Clones share it.
#[derive(Clone)]
pub struct MemorySwarm {
    state: Arc<Mutex<State>>,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    events: broadcast::Sender<SwarmEvent>,
}

impl MemorySwarm {
    pub fn new(observed: Observed) -> Self {
        let (events, _) = broadcast::channel(1024);
        let state = State { observed, next_id: 1, ..State::default() };
        Self { state: Arc::new(Mutex::new(state)), reads: Arc::default(), writes: Arc::default(), events }
    }

    /// Sets what the task `task_id` printed ([`Swarm::task_logs`]).
    pub fn set_task_logs(&self, task_id: &str, text: &str) {
        self.lock().task_logs.insert(task_id.to_owned(), text.to_owned());
    }

    /// How many times [`Swarm::task_logs`] was called.
    pub fn task_log_reads(&self) -> u64 {
        self.lock().task_log_reads
    }

    /// A service's name (its ID when unknown) and extension label: what a write is recorded by.
    fn service_name_and_extension(&self, id: &str) -> (String, Option<String>) {
        let state = self.lock();
        let service = state.observed.services.iter().find(|s| s.id == id);
        (
            service.map_or_else(|| id.to_owned(), |s| s.def.name.clone()),
            service.and_then(|s| s.def.labels.get(LABEL_EXTENSION).cloned()),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory swarm lock")
    }

    /// Writes to objects whose name contains `name_part` take `delay` each.
    pub fn slow(&self, name_part: &str, delay: Duration) {
        self.fault(name_part, |f| f.delay = delay);
    }

    /// Writes to objects whose name contains `name_part` fail `times` times (`u32::MAX`: always).
    pub fn failing(&self, name_part: &str, times: u32) {
        self.fault(name_part, |f| f.failures = times);
    }

    /// The next update of a service (or node, by hostname) whose name contains `name_part` finds
    /// its version moved.
    pub fn out_of_sequence_once(&self, name_part: &str) {
        self.fault(name_part, |f| f.out_of_sequence = true);
    }

    /// Reading the swarm takes `delay`.
    pub fn slow_observe(&self, delay: Duration) {
        self.lock().observe_delay = delay;
    }

    /// Reading the swarm fails (503) until [`MemorySwarm::heal`].
    pub fn failing_observe(&self) {
        self.lock().observe_failing = true;
    }

    /// The event stream fails at once on every subscription until [`MemorySwarm::heal`].
    pub fn failing_events(&self) {
        self.lock().events_failing = true;
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.faults.clear();
        state.observe_failing = false;
        state.events_failing = false;
    }

    fn fault(&self, name_part: &str, set: impl FnOnce(&mut Fault)) {
        let mut state = self.lock();
        let index = match state.faults.iter().position(|f| f.name_part == name_part) {
            Some(i) => i,
            None => {
                state.faults.push(Fault {
                    name_part: name_part.to_owned(),
                    delay: Duration::ZERO,
                    failures: 0,
                    out_of_sequence: false,
                });
                state.faults.len() - 1
            }
        };
        set(&mut state.faults[index]);
    }

    /// What the swarm holds now. A secret a test added by name only gets an ID from its name,
    /// as the engine gives every secret one.
    pub fn observed(&self) -> Observed {
        let mut observed = self.lock().observed.clone();
        for name in &observed.secrets {
            observed.secret_ids.entry(name.clone()).or_insert_with(|| format!("secret-id-{name}"));
        }
        observed
    }

    /// Changes what the swarm holds (an operator's hand, an app being deployed).
    pub fn edit(&self, change: impl FnOnce(&mut Observed)) {
        change(&mut self.lock().observed);
    }

    /// Every task, as the swarm holds it now.
    pub fn tasks(&self) -> Vec<reconcilers::observed::TaskFacts> {
        self.lock().observed.tasks.clone()
    }

    pub fn service(&self, name: &str) -> Option<ServiceFacts> {
        self.lock().observed.services.iter().find(|s| s.def.name == name).cloned()
    }

    pub fn node(&self, hostname: &str) -> Option<NodeFacts> {
        self.lock().observed.nodes.iter().find(|n| n.hostname == hostname).cloned()
    }

    /// The most writes that ever ran at once for one extension.
    pub fn most_writers_at_once(&self, extension: &str) -> usize {
        self.lock().most_at_once.get(extension).copied().unwrap_or_default()
    }

    /// Every write attempted so far (`"create service NAME"`, ...).
    pub fn attempts(&self) -> Vec<String> {
        self.lock().attempts.clone()
    }

    /// One write: injected faults, concurrency bookkeeping, then `apply` under the lock.
    async fn write<T>(
        &self,
        op: &str,
        name: &str,
        extension: Option<String>,
        apply: impl FnOnce(&mut State) -> Result<T, SwarmError>,
    ) -> Result<T, SwarmError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let operation = format!("{op} {name}");
        let delay = {
            let mut state = self.lock();
            state.attempts.push(operation.clone());
            if let Some(ext) = &extension {
                let running = state.running.entry(ext.clone()).or_default();
                *running += 1;
                let now = *running;
                let most = state.most_at_once.entry(ext.clone()).or_default();
                *most = (*most).max(now);
            }
            state.faults.iter().filter(|f| name.contains(&f.name_part)).map(|f| f.delay).max().unwrap_or_default()
        };
        tokio::time::sleep(delay).await;
        let mut state = self.lock();
        if let Some(ext) = &extension {
            *state.running.get_mut(ext).expect("counted above") -= 1;
        }
        if let Some(fault) = state.faults.iter_mut().find(|f| name.contains(&f.name_part) && f.failures > 0) {
            if fault.failures != u32::MAX {
                fault.failures -= 1;
            }
            return Err(injected(&operation, 500));
        }
        let result = apply(&mut state);
        if result.is_ok() {
            let kind = match op.rsplit(' ').next() {
                Some("config") => ObjectKind::Config,
                Some("node") => ObjectKind::Node,
                _ => ObjectKind::Service,
            };
            let action = op.split(' ').next().unwrap_or(op).to_owned();
            let _ = self.events.send(SwarmEvent { kind, action, id: String::new(), name: Some(name.to_owned()) });
        }
        result
    }

    fn next_id(state: &mut State, prefix: &str) -> String {
        state.next_id += 1;
        format!("{prefix}-{}", state.next_id)
    }
}

impl Swarm for MemorySwarm {
    async fn observe(&self) -> Result<Observed, SwarmError> {
        self.reads.fetch_add(6, Ordering::Relaxed);
        let (delay, failing) = {
            let state = self.lock();
            (state.observe_delay, state.observe_failing)
        };
        tokio::time::sleep(delay).await;
        if failing {
            return Err(injected("list services", 503));
        }
        Ok(self.observed())
    }

    async fn inspect_service(&self, id: &str) -> Result<Option<ServiceFacts>, SwarmError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.lock().observed.services.iter().find(|s| s.id == id || s.def.name == id).cloned())
    }

    async fn task_logs(&self, task_id: &str) -> Result<String, SwarmError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.task_log_reads += 1;
        Ok(state.task_logs.get(task_id).cloned().unwrap_or_default())
    }

    async fn create_network(&self, def: &NetworkDef) -> Result<(), SwarmError> {
        self.write("create network", &def.name, None, |state| {
            let id = Self::next_id(state, "net");
            state.observed.networks.push(NetworkFacts {
                id,
                name: def.name.clone(),
                driver: "overlay".into(),
                scope: "swarm".into(),
                ingress: false,
                labels: def.labels.clone(),
            });
            Ok(())
        })
        .await
    }

    async fn create_config(&self, def: &ConfigDef) -> Result<(), SwarmError> {
        let extension = def.labels.get(LABEL_EXTENSION).cloned();
        self.write("create config", &def.name, extension, |state| {
            if state.observed.configs.iter().any(|c| c.name == def.name) {
                return Err(SwarmError::Conflict { operation: format!("create config {}", def.name) });
            }
            let id = Self::next_id(state, "cfg");
            state.observed.configs.push(ConfigFacts {
                id,
                name: def.name.clone(),
                labels: def.labels.clone(),
                version: 1,
                data: def.data.clone(),
            });
            Ok(())
        })
        .await
    }

    async fn create_service(&self, def: &ServiceDef) -> Result<(), SwarmError> {
        let extension = def.labels.get(LABEL_EXTENSION).cloned();
        self.write("create service", &def.name, extension, |state| {
            if state.observed.services.iter().any(|s| s.def.name == def.name) {
                return Err(SwarmError::Conflict { operation: format!("create service {}", def.name) });
            }
            let id = Self::next_id(state, "svc");
            state.observed.services.push(ServiceFacts {
                id,
                version: 1,
                def: ServiceDef { managed: Default::default(), ..def.clone() },
                update_state: None,
                created_at: "2026-01-02T00:00:00Z".into(),
                network_ids: def.networks.clone(),
                vips: vec![],
                previous_spec_hash: None,
            });
            Ok(())
        })
        .await
    }

    async fn update_service(&self, id: &str, version: u64, def: &ServiceDef) -> Result<(), SwarmError> {
        let extension = def.labels.get(LABEL_EXTENSION).cloned();
        self.write("update service", &def.name, extension, |state| {
            let operation = format!("update service {}", def.name);
            let lost_lock = match state.faults.iter_mut().find(|f| def.name.contains(&f.name_part) && f.out_of_sequence)
            {
                Some(fault) => {
                    fault.out_of_sequence = false;
                    true
                }
                None => false,
            };
            let service = state
                .observed
                .services
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or_else(|| SwarmError::NotFound { operation: operation.clone() })?;
            if lost_lock {
                service.version += 1;
            }
            if service.version != version {
                return Err(SwarmError::OutOfSequence { operation });
            }
            service.def = ServiceDef { managed: Default::default(), ..def.clone() };
            service.version += 1;
            service.network_ids = def.networks.clone();
            Ok(())
        })
        .await
    }

    async fn delete_service(&self, id: &str) -> Result<(), SwarmError> {
        let (name, extension) = self.service_name_and_extension(id);
        self.write("delete service", &name, extension, |state| {
            let before = state.observed.services.len();
            state.observed.services.retain(|s| s.id != id);
            if state.observed.services.len() == before {
                return Err(SwarmError::NotFound { operation: format!("delete service {id}") });
            }
            Ok(())
        })
        .await
    }

    /// A perfect scheduler: the service's tasks waiting for a port start at once.
    async fn reschedule(&self, id: &str) -> Result<(), SwarmError> {
        let (name, extension) = self.service_name_and_extension(id);
        self.write("reschedule service", &name, extension, |state| {
            let service = state.observed.services.iter_mut().find(|s| s.id == id);
            let Some(service) = service else {
                return Err(SwarmError::NotFound { operation: format!("reschedule service {id}") });
            };
            service.version += 1;
            for task in state.observed.tasks.iter_mut().filter(|t| t.service_id == id && t.stuck_pending) {
                task.stuck_pending = false;
                task.running = true;
            }
            Ok(())
        })
        .await
    }

    async fn delete_config(&self, id: &str) -> Result<(), SwarmError> {
        let (name, extension) = {
            let state = self.lock();
            let config = state.observed.configs.iter().find(|c| c.id == id);
            (
                config.map_or_else(|| id.to_owned(), |c| c.name.clone()),
                config.and_then(|c| c.labels.get(LABEL_EXTENSION).cloned()),
            )
        };
        self.write("delete config", &name, extension, |state| {
            let before = state.observed.configs.len();
            state.observed.configs.retain(|c| c.id != id);
            if state.observed.configs.len() == before {
                return Err(SwarmError::NotFound { operation: format!("delete config {id}") });
            }
            Ok(())
        })
        .await
    }

    async fn create_secret(&self, def: &SecretDef) -> Result<(), SwarmError> {
        let extension = def.labels.get(LABEL_EXTENSION).cloned();
        self.write("create secret", &def.name, extension, |state| {
            if state.observed.secrets.contains(&def.name) {
                return Err(SwarmError::Conflict { operation: format!("create secret {}", def.name) });
            }
            state.observed.secrets.push(def.name.clone());
            state.observed.secret_labels.insert(def.name.clone(), def.labels.clone());
            Ok(())
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> Result<(), SwarmError> {
        let extension = self.lock().observed.secret_labels.get(name).and_then(|l| l.get(LABEL_EXTENSION).cloned());
        self.write("delete secret", name, extension, |state| {
            if !state.observed.secrets.iter().any(|s| s == name) {
                return Err(SwarmError::NotFound { operation: format!("delete secret {name}") });
            }
            state.observed.secrets.retain(|s| s != name);
            state.observed.secret_labels.remove(name);
            Ok(())
        })
        .await
    }

    async fn inspect_node(&self, id: &str) -> Result<Option<NodeFacts>, SwarmError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.lock().observed.nodes.iter().find(|n| n.id == id || n.hostname == id).cloned())
    }

    async fn update_node(&self, id: &str, version: u64, labels: &BTreeMap<String, String>) -> Result<(), SwarmError> {
        let hostname = self
            .lock()
            .observed
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.to_owned(), |n| n.hostname.clone());
        self.write("update node", &hostname, None, |state| {
            let operation = format!("update node {hostname}");
            let lost_lock = match state.faults.iter_mut().find(|f| hostname.contains(&f.name_part) && f.out_of_sequence)
            {
                Some(fault) => {
                    fault.out_of_sequence = false;
                    true
                }
                None => false,
            };
            let node = state
                .observed
                .nodes
                .iter_mut()
                .find(|n| n.id == id)
                .ok_or_else(|| SwarmError::NotFound { operation: operation.clone() })?;
            if lost_lock {
                // Someone else's write got there first: theirs is a hand label.
                node.version += 1;
                node.labels.insert("someone-else".to_owned(), "was-here".to_owned());
            }
            if node.version != version {
                return Err(SwarmError::OutOfSequence { operation });
            }
            node.labels.clone_from(labels);
            node.version += 1;
            Ok(())
        })
        .await
    }

    fn events(&self, _kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, SwarmError>> + Send + 'static {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let failing = self.lock().events_failing;
        futures_util::stream::unfold((self.events.subscribe(), failing), |(mut rx, failing)| async move {
            if failing {
                let e = injected("events", 503);
                return Some((Err(e), (rx, false)));
            }
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Ok(event), (rx, false))),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    fn requests(&self) -> (u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed))
    }

    fn endpoint(&self) -> &str {
        "memory"
    }

    /// A manager, always.
    async fn engine(&self) -> Result<EngineFacts, SwarmError> {
        self.reads.fetch_add(2, Ordering::Relaxed);
        Ok(EngineFacts {
            version: "memory".into(),
            api_version: "memory".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            name: "memory".into(),
            swarm: SwarmMembership::Manager { node_id: "memory".into() },
        })
    }

    async fn require_manager(&self) -> Result<EngineFacts, SwarmError> {
        self.engine().await
    }

    async fn manager_join_token(&self) -> Result<String, SwarmError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok("SWMTKN-1-memory".into())
    }

    /// Interlock runs as a plain process beside a memory swarm.
    async fn own_container(&self, _id: &str) -> Result<Option<OwnContainer>, SwarmError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// No engine events: the stream ends at once.
    fn all_events(&self) -> impl Stream<Item = Result<EngineEvent, SwarmError>> + Send + 'static {
        futures_util::stream::empty()
    }
}

/// An injected failure of `operation`, worded as the engine's answer with HTTP `status` would
/// be (a transient one).
fn injected(operation: &str, status: u16) -> SwarmError {
    SwarmError::failed(format!("{operation}: the engine answered {status}: injected failure"), true)
}

/// A new running task of demo-east: a route change in us-east only.
pub fn scale_demo_east(observed: &mut Observed, ip: &str) {
    observed.tasks.push(reconcilers::fixtures::task(&format!("t-{ip}"), "s-east", "n-east", ip));
}
