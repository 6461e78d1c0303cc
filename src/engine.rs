//! The seam between the node-local programs and their node's Docker engine: [`NodeEngine`], what
//! `interlock extension` ([`crate::extension`]) and `interlock agent` ([`crate::agent`]) ask of
//! the engine of the node they run on (its socket mounted into their task), with the plain types
//! it answers in and its own error, [`EngineError`].
//!
//! The Docker adapter ([`crate::docker`]) implements it for real (in `docker/node.rs`); the
//! programs' unit tests implement it with fakes. Nothing here knows bollard: a Docker call made
//! outside the adapter goes through this trait (or, on the manager's side,
//! [`crate::swarm::Swarm`]).

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::Stream;

/// What the node-local programs need from their node's engine.
pub trait NodeEngine: Send + Sync {
    /// The engine's name (`docker info`'s `Name`, the Swarm node's hostname).
    fn node_name(&self) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Every running container on this engine.
    fn running_containers(&self) -> impl Future<Output = Result<Vec<RunningContainer>, EngineError>> + Send;
    /// The running containers of the Swarm service `service` on this engine, with their task and
    /// node IDs (the proxy tasks an extension drives).
    fn service_containers(
        &self,
        service: &str,
    ) -> impl Future<Output = Result<Vec<LocalContainer>, EngineError>> + Send;
    /// One reading of a container's counters (`None`: no reading, the container stopped).
    fn container_stats(&self, id: &str) -> impl Future<Output = Result<Option<ContainerStats>, EngineError>> + Send;
    /// Runs `argv` in the container (no shell, no TTY, no stdin) and waits for it.
    fn exec(&self, container: &str, argv: &[String]) -> impl Future<Output = Result<ExecOutput, EngineError>> + Send;
    /// Writes `files` (absolute path, content) into the container, creating missing parent
    /// directories.
    fn write_files(
        &self,
        container: &str,
        files: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Sends `signal` (such as `"SIGHUP"`) to the container's main process.
    fn signal(&self, container: &str, signal: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The IDs of the containers of the Swarm service `service` as this engine starts them, from
    /// now on. It ends when the engine closes it: the caller resubscribes, and lists rather than
    /// trust it alone.
    fn container_starts(&self, service: &str) -> impl Stream<Item = Result<String, EngineError>> + Send + 'static;
    /// The image of the container `id` on this engine (`None`: no such container).
    fn container_image(&self, id: &str) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
}

/// A failed call to a node's engine. The text is the adapter's, whole (what failed and why);
/// the variant is the one distinction the callers act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No such container (it went away between a list and this call, say).
    #[error("{0}")]
    NotFound(String),
    /// Anything else: the engine unreachable, slow, or refusing the call.
    #[error("{0}")]
    Failed(String),
}

/// A running container of a Swarm service on this node's engine, with the task it runs (from its
/// labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContainer {
    pub id: String,
    /// `com.docker.swarm.task.id`: absent on a container Swarm did not start.
    pub task_id: Option<String>,
    /// `com.docker.swarm.node.id`.
    pub node_id: Option<String>,
    /// `com.docker.swarm.service.name`.
    pub service: String,
}

/// What a command run in a container ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// Its stdout and stderr as they arrived, interleaved: the first 64 KiB, invalid UTF-8
    /// replaced.
    pub output: String,
}

/// A running container on this engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    /// Its name without the leading `/` (a Swarm task's is `SERVICE.SLOT.TASK_ID`).
    pub name: String,
    /// The image as the container was created from it (`local/interlock-app:lab`).
    pub image: String,
    /// `com.docker.swarm.service.name`: the Swarm service of a task's container.
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One reading of a container's counters. Absent values (a stopped container's, or memory
/// counters cgroup v2 does not keep, such as `max_usage` and `failcnt`) are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// CPU time, nanoseconds: total, in kernel mode, in user mode.
    pub cpu_total: u64,
    pub cpu_kernel: u64,
    pub cpu_user: u64,
    /// Memory, bytes (failcnt: times the limit was hit).
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    pub memory_failcnt: u64,
    pub memory_limit: u64,
    /// Summed over every interface of the container.
    pub network: NetworkTotals,
}

/// Network counters summed over a container's interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkTotals {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl ContainerStats {
    /// Usage as a percentage of the limit (0 without a limit), as Interlock 0.3 computed it.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 { 0.0 } else { self.memory_usage as f64 / self.memory_limit as f64 * 100.0 }
    }
}
