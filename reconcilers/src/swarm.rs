//! The Swarm as the core sees it: plain data read by the shell's Docker adapter, and the plain
//! definitions the core asks the adapter to write. Nothing here knows how Docker is reached.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// A node's role in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeRole {
    Manager,
    Worker,
}

/// Whether the scheduler may place tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAvailability {
    Active,
    Pause,
    Drain,
}

/// A swarm node, with what placement and node-label management need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    pub availability: NodeAvailability,
    /// `Status.State == ready`.
    pub ready: bool,
    /// `Status.Addr`: where host-mode published ports answer.
    pub address: Option<String>,
    /// `Spec.Labels`: the labels constraints `node.labels.*` match.
    pub labels: BTreeMap<String, String>,
    /// `Description.Engine.Labels`: what `engine.labels.*` match.
    pub engine_labels: BTreeMap<String, String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    /// `Version.Index`, required to update the node.
    pub version: u64,
}

/// The engine the shell is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFacts {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
    pub name: String,
    pub swarm: SwarmMembership,
}

/// This engine's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmMembership {
    /// Not part of a swarm (`LocalNodeState` is `inactive`).
    None,
    /// A worker: it cannot list or change services.
    Worker { node_id: String },
    /// A manager: the only kind of node interlock can run on.
    Manager { node_id: String },
    /// Pending, error or locked: the state string as the engine reports it.
    Other { state: String },
}

/// A port a service publishes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortDef {
    pub published: u16,
    pub target: u16,
    pub mode: PublishMode,
}

/// How a port is published: on every node through the routing mesh, or on the task's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PublishMode {
    Ingress,
    Host,
}

/// A Docker config mounted into a service's containers. The core names configs; the adapter
/// resolves the ID when it writes, so the ID takes no part in comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigMount {
    pub config_name: String,
    pub target: String,
}

/// A Docker secret mounted into a service's containers at `/run/secrets/<target>`. As with
/// configs, the adapter resolves the ID when it writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SecretMount {
    pub secret_name: String,
    pub target: String,
}

/// How Swarm rolls a service's tasks onto a new spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UpdatePolicy {
    /// Tasks updated at once (0 = Swarm's default of 1).
    pub parallelism: u64,
    pub delay: Option<Duration>,
    /// Roll back when an update fails (Interlock 2.3+), rather than pause.
    pub rollback_on_failure: bool,
    /// Start the new task before stopping the old one. Impossible with host-mode ports on one node.
    pub start_first: bool,
}

/// A service as the core wants it written. The adapter turns it into a full Swarm spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServiceDef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub container_labels: BTreeMap<String, String>,
    pub replicas: u64,
    pub constraints: Vec<String>,
    pub placement_preferences: Vec<String>,
    /// Network names or IDs.
    pub networks: Vec<String>,
    pub ports: Vec<PortDef>,
    pub configs: Vec<ConfigMount>,
    /// Sorted by name.
    pub secrets: Vec<SecretMount>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Duration>,
    pub update: UpdatePolicy,
    /// Host paths bind-mounted read-write (the operator's own Docker socket).
    pub bind_mounts: Vec<BindMount>,
}

/// A host path bind-mounted into a service's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub source: String,
    pub target: String,
}

/// A service as read back from the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub id: String,
    /// `Version.Index`: Swarm's optimistic lock for updates.
    pub version: u64,
    /// What could be read back into the same shape as [`ServiceDef`]. Swarm fills defaults and
    /// may rewrite fields, so this is never compared field by field with a desired definition.
    pub def: ServiceDef,
    /// `UpdateStatus.State` (`updating`, `completed`, `rollback_completed`, ...), if an update ran.
    pub update_state: Option<String>,
    /// `CreatedAt` as the engine reports it (RFC 3339), for "oldest wins" rules.
    pub created_at: String,
    /// Network IDs the service is attached to, as Swarm resolved them.
    pub network_ids: Vec<String>,
    /// `(network ID, virtual IP without prefix length)`: the service's VIP on each network.
    pub vips: Vec<(String, String)>,
}

/// A task of a service, with its addresses on overlay networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    pub id: String,
    pub service_id: String,
    pub node_id: String,
    /// `Status.State == running` and `DesiredState == running`: the task serves traffic.
    pub running: bool,
    /// `(network ID, IP address without prefix length)` per attachment.
    pub addresses: Vec<(String, String)>,
}

/// A network, as the routing rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFacts {
    pub id: String,
    pub name: String,
    pub driver: String,
    /// `swarm` for networks services can use.
    pub scope: String,
    /// The routing-mesh network: never a route's network.
    pub ingress: bool,
    pub labels: BTreeMap<String, String>,
}

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Overlay, attachable.
    pub attachable: bool,
}

/// A Docker config object (immutable content, mutable labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFacts {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub version: u64,
    /// The content, decoded (the list call returns it, so showing a diff costs no extra call).
    pub data: Vec<u8>,
}

/// A config object to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// The kind of object a swarm event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Service,
    Node,
    Network,
    Config,
    Secret,
    Other(String),
}

/// One Docker event. Events are hints that something changed, never a source of state: they
/// can be lost, and swarm events carry no labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmEvent {
    pub kind: ObjectKind,
    /// `create`, `update`, `remove`, ...
    pub action: String,
    pub id: String,
    pub name: Option<String>,
}
