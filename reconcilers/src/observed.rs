//! The Swarm as the core sees it: [`Observed`], everything the shell's Docker adapter read in
//! one pass, as plain data (nodes, services, tasks, networks, configs, events), and the plain
//! definitions the core asks the adapter to write. Nothing here knows how Docker is reached.
//! (The shell's own `swarm` module is the adapter's interface; this is only data.)
//! Uses no other module of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
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
    /// `ManagerStatus.Leader`: the manager that holds the Raft leadership now. The core replica
    /// on this node is the one that writes (see the `leader` module).
    pub leader: bool,
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

/// A field of a service spec the operator may own.
///
/// A service is created with every field of its [`ServiceDef`]. Afterwards an update writes
/// only the fields in [`ServiceDef::managed`], plus the labels and environment variables the
/// operator owns (merged key by key, see `plan::merge`): every other part of the spec, including
/// what a [`ServiceDef`] does not model (resources, health checks, log drivers), stays as the
/// operator set it by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Field {
    Image,
    Args,
    ContainerLabels,
    Replicas,
    Constraints,
    PlacementPreferences,
    Networks,
    Ports,
    Configs,
    Secrets,
    StopSignal,
    StopGracePeriod,
    UpdateParallelism,
    UpdateDelay,
    UpdateFailureAction,
    UpdateOrder,
    Mounts,
    /// The container's command (entrypoint): a hitless proxy's start script.
    Command,
    /// The container's root filesystem mounted read-only: the extension's and the agent's.
    ReadOnly,
    /// The container's `no_new_privs` bit: the extension's and the agent's.
    NoNewPrivileges,
}

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Image,
        Field::Args,
        Field::ContainerLabels,
        Field::Replicas,
        Field::Constraints,
        Field::PlacementPreferences,
        Field::Networks,
        Field::Ports,
        Field::Configs,
        Field::Secrets,
        Field::StopSignal,
        Field::StopGracePeriod,
        Field::UpdateParallelism,
        Field::UpdateDelay,
        Field::UpdateFailureAction,
        Field::UpdateOrder,
        Field::Mounts,
        Field::Command,
        Field::ReadOnly,
        Field::NoNewPrivileges,
    ];

    /// The name used in the managed-fields label, `plan` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Field::Image => "image",
            Field::Args => "args",
            Field::ContainerLabels => "container-labels",
            Field::Replicas => "replicas",
            Field::Constraints => "constraints",
            Field::PlacementPreferences => "placement-preferences",
            Field::Networks => "networks",
            Field::Ports => "ports",
            Field::Configs => "configs",
            Field::Secrets => "secrets",
            Field::StopSignal => "stop-signal",
            Field::StopGracePeriod => "stop-grace-period",
            Field::UpdateParallelism => "update-parallelism",
            Field::UpdateDelay => "update-delay",
            Field::UpdateFailureAction => "update-failure-action",
            Field::UpdateOrder => "update-order",
            Field::Mounts => "mounts",
            Field::Command => "command",
            Field::ReadOnly => "read-only",
            Field::NoNewPrivileges => "no-new-privileges",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// `a,b,c` in the enum's order: the value of the managed-fields label.
    pub fn join(fields: &BTreeSet<Field>) -> String {
        fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
    }

    /// The inverse of [`Field::join`]; unknown names (a newer operator's) are skipped.
    pub fn split(text: &str) -> BTreeSet<Field> {
        text.split(',').filter_map(|n| Field::from_name(n.trim())).collect()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service as the core wants it written. The adapter turns it into a full Swarm spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServiceDef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    /// Replaces the image's entrypoint when not empty (`args` then follow it). Left out of the
    /// canonical form when empty, so spec hashes of services without one did not change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub container_labels: BTreeMap<String, String>,
    pub replicas: u64,
    /// One task on every node the constraints allow (Swarm's global mode) instead of `replicas`.
    /// Swarm cannot change a service's mode: a change is a delete and a create.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
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
    /// The container's root filesystem is mounted read-only (Swarm's `ReadOnly`); its bind
    /// mounts, secrets and configs are not affected. Left out of the canonical form when false,
    /// so spec hashes of services without it (the proxies) did not change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The container's processes cannot gain privileges (Swarm's `Privileges.NoNewPrivileges`:
    /// setuid binaries and file capabilities give nothing). Left out of the canonical form when
    /// false, like `read_only`. Engines older than the API that added it drop it and read it back
    /// as false, so it is compared through the spec-hash label only, never field by field (see
    /// `plan::changed_fields`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// The fields an update writes (see [`Field`]). Empty on definitions read back from the
    /// swarm; the core reads what it recorded from the service's labels instead.
    pub managed: BTreeSet<Field>,
}

impl ServiceDef {
    /// Sets one field to `from`'s value.
    pub fn take_field(&mut self, from: &ServiceDef, field: Field) {
        match field {
            Field::Image => self.image.clone_from(&from.image),
            Field::Args => self.args.clone_from(&from.args),
            Field::ContainerLabels => self.container_labels.clone_from(&from.container_labels),
            Field::Replicas => self.replicas = from.replicas,
            Field::Constraints => self.constraints.clone_from(&from.constraints),
            Field::PlacementPreferences => self.placement_preferences.clone_from(&from.placement_preferences),
            Field::Networks => self.networks.clone_from(&from.networks),
            Field::Ports => self.ports.clone_from(&from.ports),
            Field::Configs => self.configs.clone_from(&from.configs),
            Field::Secrets => self.secrets.clone_from(&from.secrets),
            Field::StopSignal => self.stop_signal.clone_from(&from.stop_signal),
            Field::StopGracePeriod => self.stop_grace_period = from.stop_grace_period,
            Field::UpdateParallelism => self.update.parallelism = from.update.parallelism,
            Field::UpdateDelay => self.update.delay = from.update.delay,
            Field::UpdateFailureAction => self.update.rollback_on_failure = from.update.rollback_on_failure,
            Field::UpdateOrder => self.update.start_first = from.update.start_first,
            Field::Mounts => self.bind_mounts.clone_from(&from.bind_mounts),
            Field::Command => self.command.clone_from(&from.command),
            Field::ReadOnly => self.read_only = from.read_only,
            Field::NoNewPrivileges => self.no_new_privileges = from.no_new_privileges,
        }
    }

    /// Whether two definitions agree on one field.
    pub fn same_field(&self, other: &ServiceDef, field: Field) -> bool {
        let (mut a, mut b) = (ServiceDef::default(), ServiceDef::default());
        a.take_field(self, field);
        b.take_field(other, field);
        a == b
    }
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
    /// The spec-hash label of `PreviousSpec`. After Swarm rolls an update back, this is the
    /// hash of the spec that failed.
    pub previous_spec_hash: Option<String>,
}

impl ServiceFacts {
    /// The spec-hash label of the spec Swarm rolled this service back from, when its last update
    /// was rolled back.
    pub fn rolled_back_from(&self) -> Option<&str> {
        self.previous_spec_hash
            .as_deref()
            .filter(|_| self.update_state.as_deref().is_some_and(|u| u.starts_with("rollback")))
    }
}

/// A task of a service, with its addresses on overlay networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub id: String,
    pub service_id: String,
    pub node_id: String,
    /// `Status.State == running` and `DesiredState == running`: the task serves traffic.
    pub running: bool,
    /// `(network ID, IP address without prefix length)` per attachment.
    pub addresses: Vec<(String, String)>,
    /// Pending (`DesiredState == running`) for a reason Swarm's scheduler may not look at again
    /// by itself: a host-mode port it found in use (once the port is freed), or every node "not
    /// available for new tasks" (a new Raft leader's scheduler, after an election during the
    /// service's update; moby/moby#36699).
    pub stuck_pending: bool,
    /// `Status.State == failed`: its container exited non-zero or could not start (read for
    /// why, when its proxy service does not start: `proxy::secret_blame`).
    pub failed: bool,
    /// When Swarm created it: RFC 3339 in UTC with nine fraction digits, so that text order is
    /// time order (the adapter normalises it; "" when unknown).
    pub created: String,
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
    /// Traffic between nodes encrypted (IPsec: `--opt encrypted`).
    pub encrypted: bool,
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

/// A secret to create (the operator's own: an extension's token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
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

/// Everything read from the swarm in one pass. The truth: events only say when to read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub nodes: Vec<NodeFacts>,
    pub services: Vec<ServiceFacts>,
    pub tasks: Vec<TaskFacts>,
    pub networks: Vec<NetworkFacts>,
    /// Configs carrying interlock's ownership label (`com.docker.interlock.managed-by`).
    pub configs: Vec<ConfigFacts>,
    /// Names of every secret (TLS labels name them).
    pub secrets: Vec<String>,
    /// Labels of the secrets that have any, by name (for `SecretPolicy = "labelled"`).
    pub secret_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Every secret's ID, by name: a secret re-created under its name is another secret (what
    /// a proxy could not load is recorded by ID, `proxy::secret_blame`).
    pub secret_ids: BTreeMap<String, String>,
    /// Not read from the swarm but from the hitless extensions (the shell fills it): by
    /// extension, the newest config generation known to be served or run, and its hash.
    pub delivered: BTreeMap<String, (u64, String)>,
    /// Not read from the swarm but remembered by the running core (the shell fills it): by
    /// lowercase hostname, the node ID that reported it when last seen on one node only (the
    /// `[NodeLabels]` decisions keep it up to date).
    pub node_names: BTreeMap<String, String>,
}
