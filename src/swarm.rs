//! The seam between the reconcile loop and Docker: the reads of a pass and every write, as a
//! trait. [`crate::docker::DockerClient`] implements it for real; an in-memory swarm with fault
//! injection implements it for the loop's unit tests (`memory_swarm`), so busy clusters,
//! backoff, retries and reloads are proven without a lab.
//!
//! Errors are [`DockerError`]s either way: they are the classification the loop's error policy
//! acts on (transient or not, out of sequence, not found, conflict).

use std::future::Future;

use futures_util::Stream;
use std::collections::BTreeMap;

use reconcilers::observed::{
    ConfigDef, NetworkDef, NodeFacts, ObjectKind, Observed, SecretDef, ServiceDef, ServiceFacts, SwarmEvent,
};

use crate::docker::{DockerClient, DockerError};

/// What the loop needs from a swarm. Cheap to clone; clones share one connection and one set of
/// request counters.
pub trait Swarm: Clone + Send + Sync + 'static {
    /// Everything a pass reads (nodes, services, tasks, networks, the operator's configs, secret
    /// names).
    fn observe(&self) -> impl Future<Output = Result<Observed, DockerError>> + Send;
    /// One service, by ID or name, for a fresh version after "update out of sequence".
    fn inspect_service(&self, id: &str) -> impl Future<Output = Result<Option<ServiceFacts>, DockerError>> + Send;
    fn create_network(&self, def: &NetworkDef) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn create_config(&self, def: &ConfigDef) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn create_service(&self, def: &ServiceDef) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Writes `def.managed` (plus labels and environment) over the current spec, at `version`.
    fn update_service(
        &self,
        id: &str,
        version: u64,
        def: &ServiceDef,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn delete_service(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Schedules a service's tasks anew, its spec unchanged (`docker service update --force`).
    fn reschedule(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn delete_config(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// An operator-owned secret (a hitless extension's token).
    fn create_secret(&self, def: &SecretDef) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn delete_secret(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// One node, by ID or hostname, for a fresh version and labels after "update out of
    /// sequence".
    fn inspect_node(&self, id: &str) -> impl Future<Output = Result<Option<NodeFacts>, DockerError>> + Send;
    /// Replaces the node's labels with `labels`, at `version`; its role and availability stay as
    /// they are (`[NodeLabels]`).
    fn update_node(
        &self,
        id: &str,
        version: u64,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Events about these kinds of object, from now on. Hints only: a pass reads afresh.
    fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static;
    /// Requests sent so far: `(reads, writes)`.
    fn requests(&self) -> (u64, u64);
}

impl Swarm for DockerClient {
    async fn observe(&self) -> Result<Observed, DockerError> {
        DockerClient::observe(self, &crate::reconcile::managed_label()).await
    }

    async fn inspect_service(&self, id: &str) -> Result<Option<ServiceFacts>, DockerError> {
        DockerClient::inspect_service(self, id).await
    }

    async fn create_network(&self, def: &NetworkDef) -> Result<(), DockerError> {
        DockerClient::create_network(self, def).await.map(drop)
    }

    async fn create_config(&self, def: &ConfigDef) -> Result<(), DockerError> {
        DockerClient::create_config(self, def).await.map(drop)
    }

    async fn create_service(&self, def: &ServiceDef) -> Result<(), DockerError> {
        DockerClient::create_service(self, def).await.map(drop)
    }

    async fn update_service(&self, id: &str, version: u64, def: &ServiceDef) -> Result<(), DockerError> {
        DockerClient::update_service(self, id, version, def).await
    }

    async fn delete_service(&self, id: &str) -> Result<(), DockerError> {
        DockerClient::delete_service(self, id).await
    }

    async fn reschedule(&self, id: &str) -> Result<(), DockerError> {
        DockerClient::force_update(self, id).await
    }

    async fn delete_config(&self, id: &str) -> Result<(), DockerError> {
        DockerClient::delete_config(self, id).await
    }

    async fn create_secret(&self, def: &SecretDef) -> Result<(), DockerError> {
        DockerClient::create_secret(self, def).await.map(drop)
    }

    async fn delete_secret(&self, name: &str) -> Result<(), DockerError> {
        DockerClient::delete_secret(self, name).await
    }

    async fn inspect_node(&self, id: &str) -> Result<Option<NodeFacts>, DockerError> {
        DockerClient::inspect_node(self, id).await
    }

    async fn update_node(&self, id: &str, version: u64, labels: &BTreeMap<String, String>) -> Result<(), DockerError> {
        DockerClient::update_node(self, id, version, labels).await
    }

    fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        DockerClient::events(self, kinds)
    }

    fn requests(&self) -> (u64, u64) {
        (self.counters().reads(), self.counters().writes())
    }
}
