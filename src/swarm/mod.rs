//! The seam between the reconcile loop and a swarm: the reads of a pass and every write, as a
//! trait, and the errors it answers with. The Docker adapter implements it for real
//! (`crate::docker`, over the Engine API); an in-memory swarm with fault injection implements it
//! for the loop's unit tests (`memory`, test-only), so busy clusters, backoff, retries and
//! reloads are proven without a lab.
//!
//! Errors are [`SwarmError`]s either way: the classification the loop's error policy acts on
//! (transient or not, out of sequence, not found, conflict), with the implementation's words for
//! what went wrong. The seam knows no implementation: it depends on the core's types alone.
//!
//! Beside the loop's reads and writes, the trait answers what the commands set up with before
//! any pass (the composition root, `interlock check`, `interlock start`): the engine and its
//! place in the swarm, the manager join token, interlock's own container ([`OwnContainer`]) and
//! every event of the engine for `start`'s plug-ins ([`EngineEvent`]).

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::Stream;
use reconcilers::observed::{
    ConfigDef, NetworkDef, NodeFacts, ObjectKind, SecretDef, ServiceDef, ServiceFacts, SwarmEvent,
};
use reconcilers::observed::{EngineFacts, Observed};

#[cfg(test)]
pub(crate) mod memory;

/// What went wrong reading or writing the swarm, classified for the loop's error policy.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The object is gone (a delete of it has done its job).
    #[error("{operation}: not found")]
    NotFound { operation: String },
    /// A name already in use: someone else created an object of that name since the read.
    #[error("{operation}: name already in use")]
    Conflict { operation: String },
    /// Swarm's optimistic lock: the object changed since it was read (its version moved).
    #[error("{operation}: update out of sequence (the object changed since it was read)")]
    OutOfSequence { operation: String },
    /// Anything else, in the implementation's words; `transient`: worth retrying after a pause
    /// (the swarm may answer differently next time).
    #[error("{message}")]
    Failed {
        message: String,
        transient: bool,
        /// What the implementation's own error was caused by, when it says.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl SwarmError {
    /// A failure with no cause to chain: `message` as it should be read.
    pub fn failed(message: impl Into<String>, transient: bool) -> Self {
        SwarmError::Failed { message: message.into(), transient, source: None }
    }

    /// Worth retrying after a pause: the swarm may answer differently next time.
    pub fn is_transient(&self) -> bool {
        match self {
            SwarmError::OutOfSequence { .. } => true,
            SwarmError::Failed { transient, .. } => *transient,
            SwarmError::NotFound { .. } | SwarmError::Conflict { .. } => false,
        }
    }
}

/// What the loop needs from a swarm. Cheap to clone; clones share one connection and one set of
/// request counters.
pub trait Swarm: Clone + Send + Sync + 'static {
    /// Everything a pass reads (nodes, services, tasks, networks, the operator's configs, secret
    /// names).
    fn observe(&self) -> impl Future<Output = Result<Observed, SwarmError>> + Send;
    /// One service, by ID or name, for a fresh version after "update out of sequence".
    fn inspect_service(&self, id: &str) -> impl Future<Output = Result<Option<ServiceFacts>, SwarmError>> + Send;
    fn create_network(&self, def: &NetworkDef) -> impl Future<Output = Result<(), SwarmError>> + Send;
    fn create_config(&self, def: &ConfigDef) -> impl Future<Output = Result<(), SwarmError>> + Send;
    fn create_service(&self, def: &ServiceDef) -> impl Future<Output = Result<(), SwarmError>> + Send;
    /// Writes `def.managed` (plus labels and environment) over the current spec, at `version`.
    fn update_service(
        &self,
        id: &str,
        version: u64,
        def: &ServiceDef,
    ) -> impl Future<Output = Result<(), SwarmError>> + Send;
    fn delete_service(&self, id: &str) -> impl Future<Output = Result<(), SwarmError>> + Send;
    /// What a task printed last (a few lines): read for a failed task of a proxy service that
    /// does not start, for the proxy binary's own words.
    fn task_logs(&self, task_id: &str) -> impl Future<Output = Result<String, SwarmError>> + Send;
    /// Schedules a service's tasks anew, its spec unchanged (`docker service update --force`).
    fn reschedule(&self, id: &str) -> impl Future<Output = Result<(), SwarmError>> + Send;
    fn delete_config(&self, id: &str) -> impl Future<Output = Result<(), SwarmError>> + Send;
    /// An operator-owned secret (a hitless extension's token).
    fn create_secret(&self, def: &SecretDef) -> impl Future<Output = Result<(), SwarmError>> + Send;
    fn delete_secret(&self, name: &str) -> impl Future<Output = Result<(), SwarmError>> + Send;
    /// One node, by ID or hostname, for a fresh version and labels after "update out of
    /// sequence".
    fn inspect_node(&self, id: &str) -> impl Future<Output = Result<Option<NodeFacts>, SwarmError>> + Send;
    /// Replaces the node's labels with `labels`, at `version`; its role and availability stay as
    /// they are (`[NodeLabels]`).
    fn update_node(
        &self,
        id: &str,
        version: u64,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), SwarmError>> + Send;
    /// Events about these kinds of object, from now on. Hints only: a pass reads afresh.
    fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, SwarmError>> + Send + 'static;
    /// Requests sent so far: `(reads, writes)`.
    fn requests(&self) -> (u64, u64);

    /// The engine's address as given, for messages.
    fn endpoint(&self) -> &str;
    /// Engine version and this node's place in the swarm.
    fn engine(&self) -> impl Future<Output = Result<EngineFacts, SwarmError>> + Send;
    /// [`engine`](Self::engine), failing unless this engine manages the swarm (the error says
    /// what it is instead and what to do).
    fn require_manager(&self) -> impl Future<Output = Result<EngineFacts, SwarmError>> + Send;
    /// The token that joins a node to this swarm as a manager (only a manager answers), from
    /// which the hitless extensions' tokens derive. A credential: never log it.
    fn manager_join_token(&self) -> impl Future<Output = Result<String, SwarmError>> + Send;
    /// The container `id` on this engine (interlock's own: its hostname, when it runs as a Swarm
    /// task); `None` when no such container runs there (interlock runs as a plain process).
    fn own_container(&self, id: &str) -> impl Future<Output = Result<Option<OwnContainer>, SwarmError>> + Send;
    /// Every event of the engine, of every type, unfiltered, from now on (`interlock start`'s
    /// plug-ins). It ends when the engine closes it: the caller resubscribes. Not counted.
    fn all_events(&self) -> impl Stream<Item = Result<EngineEvent, SwarmError>> + Send + 'static;
}

/// Interlock's own container, as its engine describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnContainer {
    /// As the spec names it (`local/interlock:lab`, not a digest).
    pub image: Option<String>,
    /// `com.docker.swarm.service.name`: set when it runs as a Swarm task.
    pub service: Option<String>,
    /// `com.docker.swarm.task.id`: its own task, which tells which replica of the core it is.
    pub task: Option<String>,
}

/// One engine event, of any type: what Interlock 0.3 dispatched to its plug-ins (they see it as
/// a `PluginEvent::Docker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// `container`, `service`, `node`, `network`, ...
    pub kind: String,
    /// `start`, `die`, `create`, `update`, ...
    pub action: String,
    /// The object's ID.
    pub id: String,
    /// The object's name, when the event carries one.
    pub name: Option<String>,
    /// Unix nanoseconds.
    pub time: u128,
}
