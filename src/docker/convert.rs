//! Translation between bollard's generated models and the core's plain types in
//! `reconcilers::observed`, both ways: what a list or inspect answer means to the core, and the
//! Swarm spec, request or query a core definition becomes; and, for the node-local calls, the
//! queries and answers of `node`'s types. Pure functions, no requests.
//!
//! The one subtle part is [`overlay`]: an update writes a definition's managed fields onto the
//! service's current spec, so that what the definition does not manage (or model) survives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{
    Config, ConfigSpec, ContainerSummary, EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EventMessage, EventMessageTypeEnum, ExecConfig, LocalNodeState, Mount, MountType, Network, NetworkAttachmentConfig,
    NetworkCreateRequest, Node, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, Secret, SecretSpec,
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, SystemInfo, SystemVersion, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread,
};
use reconcilers::observed::{
    BindMount, ConfigDef, ConfigFacts, ConfigMount, EngineFacts, Field, NetworkDef, NetworkFacts, NodeAvailability,
    NodeFacts, NodeRole, ObjectKind, PortDef, PublishMode, SecretDef, SecretMount, ServiceDef, ServiceFacts,
    SwarmEvent, SwarmMembership, UpdatePolicy,
};

use super::client::SecretInfo;
use super::node;
use crate::engine::LocalContainer;

/// The engine's version answer and info answer, as the core sees the engine.
pub(super) fn engine_facts(version: SystemVersion, info: SystemInfo) -> EngineFacts {
    let swarm = info.swarm.unwrap_or_default();
    let node_id = swarm.node_id.unwrap_or_default();
    let membership = match swarm.local_node_state {
        Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => SwarmMembership::Manager { node_id },
        Some(LocalNodeState::ACTIVE) => SwarmMembership::Worker { node_id },
        Some(LocalNodeState::INACTIVE) | Some(LocalNodeState::EMPTY) | None => SwarmMembership::None,
        Some(other) => SwarmMembership::Other { state: other.to_string() },
    };
    EngineFacts {
        version: version.version.unwrap_or_default(),
        api_version: version.api_version.unwrap_or_default(),
        os: version.os.unwrap_or_default(),
        arch: version.arch.unwrap_or_default(),
        name: info.name.unwrap_or_default(),
        swarm: membership,
    }
}

/// A list filter on `label` (`key` or `key=value`).
pub(super) fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label.to_owned()])])
}

/// The events filter for swarm-scoped events about `kinds`.
pub(super) fn events_filter(kinds: &[ObjectKind]) -> HashMap<String, Vec<String>> {
    let types: Vec<String> = kinds.iter().map(kind_name).collect();
    HashMap::from([("type".to_owned(), types), ("scope".to_owned(), vec!["swarm".to_owned()])])
}

pub(super) fn network_facts(network: Network) -> NetworkFacts {
    NetworkFacts {
        id: network.id.unwrap_or_default(),
        name: network.name.unwrap_or_default(),
        driver: network.driver.unwrap_or_default(),
        scope: network.scope.unwrap_or_default(),
        ingress: network.ingress.unwrap_or_default(),
        labels: sorted(network.labels),
    }
}

/// An overlay network, attachable as the definition says.
pub(super) fn network_request(def: &NetworkDef) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: def.name.clone(),
        driver: Some("overlay".to_owned()),
        attachable: Some(def.attachable),
        labels: Some(def.labels.clone().into_iter().collect()),
        options: def.encrypted.then(|| [("encrypted".to_owned(), String::new())].into_iter().collect()),
        ..Default::default()
    }
}

/// A secret's ID, name and labels (never its data: the list call does not return it).
pub(super) fn secret_facts(secret: Secret) -> Option<SecretInfo> {
    let spec = secret.spec?;
    Some(SecretInfo {
        id: secret.id.unwrap_or_default(),
        name: spec.name?,
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
    })
}

/// A config object, its content decoded.
pub(super) fn config_facts(config: Config) -> ConfigFacts {
    let spec = config.spec.unwrap_or_default();
    ConfigFacts {
        id: config.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        labels: sorted(spec.labels),
        version: config.version.and_then(|v| v.index).unwrap_or_default(),
        data: spec.data.and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok()).unwrap_or_default(),
    }
}

pub(super) fn config_spec(def: &ConfigDef) -> ConfigSpec {
    ConfigSpec {
        name: Some(def.name.clone()),
        labels: Some(def.labels.clone().into_iter().collect()),
        data: Some(base64::engine::general_purpose::STANDARD.encode(&def.data)),
        templating: None,
    }
}

/// A secret's spec: name, labels and data as given (the API takes the data base64-encoded).
pub(super) fn secret_spec(def: &SecretDef) -> SecretSpec {
    SecretSpec {
        name: Some(def.name.clone()),
        labels: Some(def.labels.clone().into_iter().collect()),
        data: Some(base64::engine::general_purpose::STANDARD.encode(&def.data)),
        driver: None,
        templating: None,
    }
}

/// The container-list filter for the running containers of the Swarm service `service_name`.
pub(super) fn running_containers_filter(service_name: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("label".to_owned(), vec![format!("{}={service_name}", node::LABEL_SERVICE_NAME)]),
        ("status".to_owned(), vec!["running".to_owned()]),
    ])
}

/// The events filter for `start` events of the containers of the Swarm service `service_name`.
pub(super) fn container_starts_filter(service_name: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("event".to_owned(), vec!["start".to_owned()]),
        ("label".to_owned(), vec![format!("{}={service_name}", node::LABEL_SERVICE_NAME)]),
    ])
}

/// The container a `start` event is about; `None` for any other event (or one without an ID).
pub(super) fn started_container(message: EventMessage) -> Option<String> {
    let is_start = message.typ == Some(EventMessageTypeEnum::CONTAINER) && message.action.as_deref() == Some("start");
    message.actor.and_then(|a| a.id).filter(|id| is_start && !id.is_empty())
}

/// A listed container, with its Swarm task, node and service from its labels.
pub(super) fn local_container(container: ContainerSummary) -> LocalContainer {
    let mut labels = container.labels.unwrap_or_default();
    LocalContainer {
        id: container.id.unwrap_or_default(),
        task_id: labels.remove(node::LABEL_TASK_ID),
        node_id: labels.remove(node::LABEL_NODE_ID),
        service: labels.remove(node::LABEL_SERVICE_NAME).unwrap_or_default(),
    }
}

/// An exec of `argv` with stdout and stderr attached, no stdin, no TTY (so the two arrive
/// framed and apart, and nothing waits for input).
pub(super) fn exec_config(argv: &[String]) -> ExecConfig {
    ExecConfig {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(argv.to_vec()),
        ..Default::default()
    }
}

fn sorted(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

fn kind_name(kind: &ObjectKind) -> String {
    match kind {
        ObjectKind::Service => "service".to_owned(),
        ObjectKind::Node => "node".to_owned(),
        ObjectKind::Network => "network".to_owned(),
        ObjectKind::Config => "config".to_owned(),
        ObjectKind::Secret => "secret".to_owned(),
        ObjectKind::Other(name) => name.clone(),
    }
}

pub(super) fn swarm_event(message: EventMessage) -> SwarmEvent {
    let kind = match message.typ {
        Some(EventMessageTypeEnum::SERVICE) => ObjectKind::Service,
        Some(EventMessageTypeEnum::NODE) => ObjectKind::Node,
        Some(EventMessageTypeEnum::NETWORK) => ObjectKind::Network,
        Some(EventMessageTypeEnum::CONFIG) => ObjectKind::Config,
        Some(EventMessageTypeEnum::SECRET) => ObjectKind::Secret,
        Some(other) => ObjectKind::Other(other.to_string()),
        None => ObjectKind::Other(String::new()),
    };
    let actor = message.actor.unwrap_or_default();
    SwarmEvent {
        kind,
        action: message.action.unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        name: actor.attributes.and_then(|mut a| a.remove("name")),
    }
}

pub(super) fn node_facts(node: Node) -> NodeFacts {
    let spec = node.spec.unwrap_or_default();
    let description = node.description.unwrap_or_default();
    let platform = description.platform.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    NodeFacts {
        id: node.id.unwrap_or_default(),
        hostname: description.hostname.unwrap_or_default(),
        role: match spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
            _ => NodeRole::Worker,
        },
        availability: match spec.availability {
            Some(NodeSpecAvailabilityEnum::PAUSE) => NodeAvailability::Pause,
            Some(NodeSpecAvailabilityEnum::DRAIN) => NodeAvailability::Drain,
            _ => NodeAvailability::Active,
        },
        ready: status.state == Some(NodeState::READY),
        address: status.addr,
        labels: sorted(spec.labels),
        engine_labels: sorted(description.engine.and_then(|e| e.labels)),
        os: platform.os,
        arch: platform.architecture,
        version: node.version.and_then(|v| v.index).unwrap_or_default(),
        leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
    }
}

/// A node's current spec with its labels replaced by `labels` (the whole map: Swarm has no
/// partial label update); name, role and availability as they are.
pub(super) fn node_spec_with_labels(current: NodeSpec, labels: &BTreeMap<String, String>) -> NodeSpec {
    NodeSpec { labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()), ..current }
}

/// The full Swarm spec for a definition. Swarm replaces a spec wholesale on update, so every
/// field the core manages is always sent. `config_ids` holds the IDs of the mounted configs by
/// name and of the mounted secrets by `secret:NAME`; a mount without one is sent by name only.
pub(super) fn service_spec(def: &ServiceDef, config_ids: &BTreeMap<String, String>) -> ServiceSpec {
    let networks: Vec<NetworkAttachmentConfig> = def
        .networks
        .iter()
        .map(|n| NetworkAttachmentConfig { target: Some(n.clone()), ..Default::default() })
        .collect();
    let configs: Vec<TaskSpecContainerSpecConfigs> = def
        .configs
        .iter()
        .map(|c| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(c.target.clone()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            config_id: config_ids.get(&c.config_name).cloned(),
            config_name: Some(c.config_name.clone()),
            ..Default::default()
        })
        .collect();
    let ports: Vec<EndpointPortConfig> = def
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            target_port: Some(i64::from(p.target)),
            published_port: Some(i64::from(p.published)),
            publish_mode: Some(match p.mode {
                PublishMode::Host => EndpointPortConfigPublishModeEnum::HOST,
                PublishMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
            }),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(def.name.clone()),
        labels: Some(def.labels.clone().into_iter().collect()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(def.image.clone()),
                command: (!def.command.is_empty()).then(|| def.command.clone()),
                args: (!def.args.is_empty()).then(|| def.args.clone()),
                env: (!def.env.is_empty()).then(|| def.env.clone()),
                labels: Some(def.container_labels.clone().into_iter().collect()),
                configs: (!configs.is_empty()).then_some(configs),
                secrets: (!def.secrets.is_empty()).then(|| {
                    def.secrets
                        .iter()
                        .map(|m| TaskSpecContainerSpecSecrets {
                            file: Some(TaskSpecContainerSpecFile {
                                name: Some(m.target.clone()),
                                uid: Some("0".into()),
                                gid: Some("0".into()),
                                mode: Some(0o444),
                            }),
                            secret_id: config_ids.get(&format!("secret:{}", m.secret_name)).cloned(),
                            secret_name: Some(m.secret_name.clone()),
                        })
                        .collect()
                }),
                stop_signal: def.stop_signal.clone(),
                stop_grace_period: def.stop_grace_period.map(nanos),
                mounts: (!def.bind_mounts.is_empty()).then(|| {
                    def.bind_mounts
                        .iter()
                        .map(|m| Mount {
                            source: Some(m.source.clone()),
                            target: Some(m.target.clone()),
                            typ: Some(MountType::BIND),
                            ..Default::default()
                        })
                        .collect()
                }),
                read_only: def.read_only.then_some(true),
                privileges: def
                    .no_new_privileges
                    .then(|| TaskSpecContainerSpecPrivileges { no_new_privileges: Some(true), ..Default::default() }),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(def.constraints.clone()),
                preferences: Some(
                    def.placement_preferences
                        .iter()
                        .map(|p| TaskSpecPlacementPreferences {
                            spread: Some(TaskSpecPlacementSpread {
                                spread_descriptor: Some(p.trim_start_matches("spread=").to_owned()),
                            }),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            networks: (!networks.is_empty()).then_some(networks),
            ..Default::default()
        }),
        mode: Some(if def.global {
            ServiceSpecMode { global: Some(Default::default()), ..Default::default() }
        } else {
            ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(def.replicas).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            }
        }),
        endpoint_spec: Some(EndpointSpec { ports: Some(ports), ..Default::default() }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::try_from(def.update.parallelism).unwrap_or(i64::MAX)),
            delay: def.update.delay.map(nanos),
            failure_action: Some(if def.update.rollback_on_failure {
                ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK
            } else {
                ServiceSpecUpdateConfigFailureActionEnum::PAUSE
            }),
            order: Some(if def.update.start_first {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `current` with `def`'s managed fields, labels and environment taken from `wanted` (the spec
/// built from `def`).
pub(super) fn overlay(mut current: ServiceSpec, wanted: ServiceSpec, def: &ServiceDef) -> ServiceSpec {
    current.name = wanted.name;
    current.labels = wanted.labels;
    let mut task = current.task_template.take().unwrap_or_default();
    let wanted_task = wanted.task_template.unwrap_or_default();
    let mut container = task.container_spec.take().unwrap_or_default();
    let wanted_container = wanted_task.container_spec.unwrap_or_default();
    let mut placement = task.placement.take().unwrap_or_default();
    let wanted_placement = wanted_task.placement.unwrap_or_default();
    let mut update = current.update_config.take().unwrap_or_default();
    let wanted_update = wanted.update_config.unwrap_or_default();
    container.env = wanted_container.env;
    for field in &def.managed {
        match field {
            Field::Image => container.image.clone_from(&wanted_container.image),
            Field::Args => container.args.clone_from(&wanted_container.args),
            Field::ContainerLabels => container.labels.clone_from(&wanted_container.labels),
            // A global service has no replica count (and its mode cannot change by an update).
            Field::Replicas if !def.global => current.mode.clone_from(&wanted.mode),
            Field::Replicas => {}
            Field::Constraints => placement.constraints.clone_from(&wanted_placement.constraints),
            Field::PlacementPreferences => placement.preferences.clone_from(&wanted_placement.preferences),
            Field::Networks => {
                task.networks.clone_from(&wanted_task.networks);
                // The deprecated service-level list would otherwise still attach old networks.
                current.networks = None;
            }
            Field::Ports => {
                let ports = wanted.endpoint_spec.as_ref().and_then(|e| e.ports.clone());
                current.endpoint_spec.get_or_insert_with(EndpointSpec::default).ports = ports;
            }
            Field::Configs => container.configs.clone_from(&wanted_container.configs),
            Field::Secrets => container.secrets.clone_from(&wanted_container.secrets),
            Field::StopSignal => container.stop_signal.clone_from(&wanted_container.stop_signal),
            Field::StopGracePeriod => container.stop_grace_period = wanted_container.stop_grace_period,
            Field::UpdateParallelism => update.parallelism = wanted_update.parallelism,
            Field::UpdateDelay => update.delay = wanted_update.delay,
            Field::UpdateFailureAction => update.failure_action = wanted_update.failure_action,
            Field::UpdateOrder => update.order = wanted_update.order,
            Field::Mounts => container.mounts.clone_from(&wanted_container.mounts),
            Field::Command => container.command.clone_from(&wanted_container.command),
            Field::ReadOnly => container.read_only = wanted_container.read_only,
            Field::NoNewPrivileges => {
                // Only the bit: credential spec, SELinux, seccomp and AppArmor stay as they are.
                let wanted = wanted_container.privileges.as_ref().and_then(|p| p.no_new_privileges);
                if wanted.is_some() || container.privileges.is_some() {
                    container.privileges.get_or_insert_with(Default::default).no_new_privileges = wanted;
                }
            }
        }
    }
    task.container_spec = Some(container);
    task.placement = Some(placement);
    current.task_template = Some(task);
    current.update_config = Some(update);
    current
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Reads a service back into the definition's shape (see [`ServiceFacts::def`]).
pub(super) fn service_facts(service: Service) -> ServiceFacts {
    let spec = service.spec.unwrap_or_default();
    let task = spec.task_template.unwrap_or_default();
    let container = task.container_spec.unwrap_or_default();
    let placement = task.placement.unwrap_or_default();
    let update = spec.update_config.unwrap_or_default();
    let networks: Vec<String> = task.networks.unwrap_or_default().into_iter().filter_map(|n| n.target).collect();
    // Swarm resolves network names to IDs in the stored spec.
    let network_ids = networks.clone();
    let def = ServiceDef {
        name: spec.name.unwrap_or_default(),
        labels: sorted(spec.labels),
        image: container.image.unwrap_or_default(),
        command: container.command.unwrap_or_default(),
        args: container.args.unwrap_or_default(),
        env: container.env.unwrap_or_default(),
        container_labels: sorted(container.labels),
        global: spec.mode.as_ref().is_some_and(|m| m.global.is_some()),
        replicas: spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or_default(),
        constraints: placement.constraints.unwrap_or_default(),
        placement_preferences: placement
            .preferences
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.spread?.spread_descriptor.map(|d| format!("spread={d}")))
            .collect(),
        networks,
        ports: spec
            .endpoint_spec
            .and_then(|e| e.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| PortDef {
                published: p.published_port.and_then(|p| u16::try_from(p).ok()).unwrap_or_default(),
                target: p.target_port.and_then(|p| u16::try_from(p).ok()).unwrap_or_default(),
                mode: match p.publish_mode {
                    Some(EndpointPortConfigPublishModeEnum::HOST) => PublishMode::Host,
                    _ => PublishMode::Ingress,
                },
            })
            .collect(),
        configs: container
            .configs
            .unwrap_or_default()
            .into_iter()
            .map(|c| ConfigMount {
                config_name: c.config_name.unwrap_or_default(),
                target: c.file.and_then(|f| f.name).unwrap_or_default(),
            })
            .collect(),
        secrets: {
            let mut secrets: Vec<SecretMount> = container
                .secrets
                .unwrap_or_default()
                .into_iter()
                .map(|m| SecretMount {
                    secret_name: m.secret_name.unwrap_or_default(),
                    target: m.file.and_then(|f| f.name).unwrap_or_default(),
                })
                .collect();
            secrets.sort();
            secrets
        },
        stop_signal: container.stop_signal,
        stop_grace_period: container.stop_grace_period.and_then(|n| u64::try_from(n).ok()).map(Duration::from_nanos),
        update: UpdatePolicy {
            parallelism: update.parallelism.and_then(|p| u64::try_from(p).ok()).unwrap_or_default(),
            delay: update.delay.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0).map(Duration::from_nanos),
            rollback_on_failure: update.failure_action == Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            start_first: update.order == Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        },
        bind_mounts: container
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ == Some(MountType::BIND))
            .map(|m| BindMount { source: m.source.unwrap_or_default(), target: m.target.unwrap_or_default() })
            .collect(),
        read_only: container.read_only.unwrap_or_default(),
        // An engine older than the API that added it reads it back as absent: see
        // `ServiceDef::no_new_privileges`.
        no_new_privileges: container.privileges.as_ref().and_then(|p| p.no_new_privileges).unwrap_or_default(),
        managed: BTreeSet::new(),
    };
    ServiceFacts {
        // bollard's model drops PreviousSpec: `DockerClient::list_services` reads it raw when
        // it matters (after a rollback).
        previous_spec_hash: None,
        id: service.id.unwrap_or_default(),
        version: service.version.and_then(|v| v.index).unwrap_or_default(),
        def,
        update_state: service.update_status.and_then(|u| u.state).map(|s| s.to_string()),
        created_at: service.created_at.unwrap_or_default(),
        network_ids,
        vips: service
            .endpoint
            .and_then(|e| e.virtual_ips)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let addr = v.addr?;
                let ip = addr.split_once('/').map_or(addr.as_str(), |(ip, _)| ip).to_owned();
                Some((v.network_id?, ip))
            })
            .collect(),
    }
}

/// The spec-hash label of a raw `GET /services/ID` answer's `PreviousSpec`.
pub(super) fn previous_spec_hash(body: &[u8]) -> Result<Option<String>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(value
        .pointer("/PreviousSpec/Labels")
        .and_then(|labels| labels.get(reconcilers::ownership::LABEL_SPEC_HASH))
        .and_then(|hash| hash.as_str())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        HealthConfig, Limit, ObjectVersion, ServiceEndpoint, ServiceEndpointVirtualIps, TaskSpecResources,
    };

    use super::*;

    /// A proxy definition using every field a `ServiceDef` models.
    fn proxy_def() -> ServiceDef {
        ServiceDef {
            name: "demo-east-proxy".into(),
            labels: BTreeMap::from([
                ("com.docker.interlock.managed-by".into(), "interlock".into()),
                ("com.docker.interlock.spec-hash".into(), "abc123".into()),
            ]),
            image: "nginx:1.27-alpine".into(),
            command: vec!["/bin/sh".into(), "-c".into(), "exec nginx \"$@\"".into()],
            args: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec!["INTERLOCK_EXTENSION=demo-east".into()],
            container_labels: BTreeMap::from([("com.docker.interlock.role".into(), "proxy".into())]),
            replicas: 2,
            global: false,
            constraints: vec!["node.labels.nodetype==loadbalancer".into(), "node.labels.region==east".into()],
            placement_preferences: vec!["spread=node.labels.zone".into()],
            networks: vec!["net-east".into()],
            ports: vec![
                PortDef { published: 80, target: 80, mode: PublishMode::Host },
                PortDef { published: 443, target: 443, mode: PublishMode::Ingress },
            ],
            configs: vec![ConfigMount {
                config_name: "demo-east-proxy-1".into(),
                target: "/etc/nginx/nginx.conf".into(),
            }],
            secrets: vec![
                SecretMount { secret_name: "app.example.org.cert".into(), target: "app.cert".into() },
                SecretMount { secret_name: "app.example.org.key".into(), target: "app.key".into() },
            ],
            stop_signal: Some("SIGQUIT".into()),
            stop_grace_period: Some(Duration::from_secs(5)),
            update: UpdatePolicy {
                parallelism: 1,
                delay: Some(Duration::from_secs(2)),
                rollback_on_failure: true,
                start_first: false,
            },
            bind_mounts: vec![BindMount {
                source: "/var/run/docker.sock".into(),
                target: "/var/run/docker.sock".into(),
            }],
            read_only: true,
            no_new_privileges: true,
            managed: BTreeSet::from([Field::Image, Field::Configs]),
        }
    }

    fn ids() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("demo-east-proxy-1".into(), "cfg-1".into()),
            ("demo-east-proxy-2".into(), "cfg-2".into()),
            ("secret:app.example.org.cert".into(), "sec-1".into()),
            ("secret:app.example.org.key".into(), "sec-2".into()),
        ])
    }

    /// What the service looks like after an operator tuned it by hand: other constraints,
    /// resources and a health check (which a `ServiceDef` does not model), and one more
    /// container label.
    fn hand_tuned_spec() -> ServiceSpec {
        let mut spec = service_spec(&proxy_def(), &ids());
        let task = spec.task_template.as_mut().unwrap();
        task.placement.as_mut().unwrap().constraints = Some(vec!["node.hostname==lb-1".into()]);
        task.resources = Some(TaskSpecResources {
            limits: Some(Limit { nano_cpus: Some(500_000_000), memory_bytes: Some(256 << 20), pids: None }),
            ..Default::default()
        });
        let container = task.container_spec.as_mut().unwrap();
        container.health_check =
            Some(HealthConfig { test: Some(vec!["CMD".into(), "true".into()]), ..Default::default() });
        container.labels.as_mut().unwrap().insert("team".into(), "edge".into());
        spec
    }

    /// The next definition: new image, constraints and config object, and one more label.
    fn next_def(managed: &[Field]) -> ServiceDef {
        let mut def = proxy_def();
        def.image = "nginx:1.28-alpine".into();
        def.constraints = vec!["node.labels.nodetype==loadbalancer".into()];
        def.configs[0].config_name = "demo-east-proxy-2".into();
        def.labels.insert("owner".into(), "ops".into());
        def.env.push("NGINX_WORKERS=4".into());
        def.managed = managed.iter().copied().collect();
        def
    }

    fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
        spec.task_template.as_ref().unwrap().container_spec.as_ref().unwrap()
    }

    fn task(spec: &ServiceSpec) -> &TaskSpec {
        spec.task_template.as_ref().unwrap()
    }

    #[test]
    fn an_update_managing_configs_keeps_what_was_set_by_hand() {
        let current = hand_tuned_spec();
        let def = next_def(&[Field::Configs]);
        let updated = overlay(current.clone(), service_spec(&def, &ids()), &def);

        // The managed field comes from the definition, with its resolved ID.
        let configs = container(&updated).configs.as_ref().unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].config_name.as_deref(), Some("demo-east-proxy-2"));
        assert_eq!(configs[0].config_id.as_deref(), Some("cfg-2"));
        assert_eq!(configs[0].file.as_ref().and_then(|f| f.name.as_deref()), Some("/etc/nginx/nginx.conf"));
        // Labels and environment always come from the definition (merged by `plan::merge`).
        assert_eq!(updated.labels, Some(def.labels.clone().into_iter().collect()));
        assert_eq!(container(&updated).env, Some(def.env.clone()));
        // Everything else is the current spec's: hand-set constraints, resources, health check,
        // the extra container label, and the unmanaged image.
        assert_eq!(task(&updated).placement, task(&current).placement);
        assert_eq!(task(&updated).resources, task(&current).resources);
        assert_eq!(container(&updated).health_check, container(&current).health_check);
        assert_eq!(container(&updated).labels.as_ref().unwrap().get("team").map(String::as_str), Some("edge"));
        assert_eq!(container(&updated).image.as_deref(), Some("nginx:1.27-alpine"));
        assert_eq!(updated.mode, current.mode);
        assert_eq!(updated.endpoint_spec, current.endpoint_spec);
        assert_eq!(updated.update_config, current.update_config);
    }

    #[test]
    fn an_update_managing_constraints_replaces_them_and_only_them() {
        let current = hand_tuned_spec();
        let def = next_def(&[Field::Constraints]);
        let updated = overlay(current.clone(), service_spec(&def, &ids()), &def);

        let placement = task(&updated).placement.as_ref().unwrap();
        assert_eq!(placement.constraints, Some(vec!["node.labels.nodetype==loadbalancer".to_owned()]));
        assert_eq!(placement.preferences, task(&current).placement.as_ref().unwrap().preferences);
        assert_eq!(task(&updated).resources, task(&current).resources);
        assert_eq!(container(&updated).configs, container(&current).configs, "configs are not managed here");
        assert_eq!(container(&updated).image.as_deref(), Some("nginx:1.27-alpine"));
    }

    #[test]
    fn an_update_managing_networks_drops_the_deprecated_service_level_list() {
        let mut current = hand_tuned_spec();
        current.networks = Some(vec![NetworkAttachmentConfig { target: Some("old-net".into()), ..Default::default() }]);
        let mut def = next_def(&[]);
        def.networks = vec!["net-east".into(), "net-shared".into()];
        let updated = overlay(current.clone(), service_spec(&def, &ids()), &def);
        assert_eq!(updated.networks, current.networks, "unmanaged: left alone");

        def.managed = BTreeSet::from([Field::Networks]);
        let updated = overlay(current, service_spec(&def, &ids()), &def);
        assert_eq!(updated.networks, None);
        let targets: Vec<_> = task(&updated).networks.iter().flatten().filter_map(|n| n.target.clone()).collect();
        assert_eq!(targets, ["net-east", "net-shared"]);
    }

    #[test]
    fn every_field_is_managed_when_every_field_is_declared() {
        let mut def = next_def(&Field::ALL);
        def.constraints = vec!["node.role==worker".into()];
        let updated = overlay(hand_tuned_spec(), service_spec(&def, &ids()), &def);
        let read_back = service_facts(Service { spec: Some(updated), ..Default::default() }).def;
        assert_eq!(read_back, ServiceDef { managed: BTreeSet::new(), ..def });
    }

    #[test]
    fn a_definition_reads_back_as_itself() {
        let def = proxy_def();
        let service = Service {
            id: Some("svc-1".into()),
            version: Some(ObjectVersion { index: Some(42) }),
            created_at: Some("2026-11-22T03:00:00.000000000Z".into()),
            spec: Some(service_spec(&def, &ids())),
            endpoint: Some(ServiceEndpoint {
                virtual_ips: Some(vec![ServiceEndpointVirtualIps {
                    network_id: Some("net-east-id".into()),
                    addr: Some("10.0.2.7/24".into()),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let facts = service_facts(service);
        assert_eq!(facts.def, ServiceDef { managed: BTreeSet::new(), ..def });
        assert_eq!((facts.id.as_str(), facts.version), ("svc-1", 42));
        assert_eq!(facts.created_at, "2026-11-22T03:00:00.000000000Z");
        assert_eq!(facts.network_ids, ["net-east"]);
        assert_eq!(facts.vips, [("net-east-id".to_owned(), "10.0.2.7".to_owned())]);
        assert_eq!(facts.update_state, None);
    }

    #[test]
    fn the_hardening_fields_are_sent_only_when_set() {
        let json = serde_json::to_value(service_spec(&proxy_def(), &ids())).unwrap();
        let container = &json["TaskTemplate"]["ContainerSpec"];
        assert_eq!(container["ReadOnly"], true);
        assert_eq!(container["Privileges"], serde_json::json!({ "NoNewPrivileges": true }));
        let def = ServiceDef { read_only: false, no_new_privileges: false, ..proxy_def() };
        let json = serde_json::to_value(service_spec(&def, &ids())).unwrap();
        let container = json["TaskTemplate"]["ContainerSpec"].as_object().unwrap();
        assert!(!container.contains_key("ReadOnly") && !container.contains_key("Privileges"), "{container:?}");
    }

    #[test]
    fn an_update_managing_no_new_privileges_sets_the_bit_and_keeps_other_privileges() {
        let mut current =
            service_spec(&ServiceDef { read_only: false, no_new_privileges: false, ..proxy_def() }, &ids());
        let hand_set = TaskSpecContainerSpecPrivileges {
            se_linux_context: Some(bollard::models::TaskSpecContainerSpecPrivilegesSeLinuxContext {
                disable: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        current.task_template.as_mut().unwrap().container_spec.as_mut().unwrap().privileges = Some(hand_set.clone());
        let def = next_def(&[]);
        let unmanaged = overlay(current.clone(), service_spec(&def, &ids()), &def);
        assert_eq!(container(&unmanaged).privileges, Some(hand_set.clone()), "unmanaged: left alone");
        assert_eq!(container(&unmanaged).read_only, None);

        let def = next_def(&[Field::ReadOnly, Field::NoNewPrivileges]);
        let updated = overlay(current, service_spec(&def, &ids()), &def);
        assert_eq!(
            container(&updated).privileges,
            Some(TaskSpecContainerSpecPrivileges { no_new_privileges: Some(true), ..hand_set })
        );
        assert_eq!(container(&updated).read_only, Some(true));
        let read_back = service_facts(Service { spec: Some(updated), ..Default::default() }).def;
        assert!(read_back.read_only && read_back.no_new_privileges);
    }

    #[test]
    fn a_minimal_definition_reads_back_as_itself() {
        let def = ServiceDef { name: "ext".into(), image: "interlock:dev".into(), replicas: 1, ..Default::default() };
        let facts = service_facts(Service { spec: Some(service_spec(&def, &BTreeMap::new())), ..Default::default() });
        assert_eq!(facts.def, def);
    }

    #[test]
    fn the_spec_carries_resolved_ids_and_swarm_spellings() {
        let spec = service_spec(&proxy_def(), &ids());
        let secrets = container(&spec).secrets.as_ref().unwrap();
        assert_eq!(secrets[0].secret_id.as_deref(), Some("sec-1"));
        let preferences = task(&spec).placement.as_ref().unwrap().preferences.as_ref().unwrap();
        let spread = preferences[0].spread.as_ref().unwrap().spread_descriptor.as_deref();
        assert_eq!(spread, Some("node.labels.zone"), "without the `spread=` of the TOML form");
        let update = spec.update_config.as_ref().unwrap();
        assert_eq!(update.delay, Some(2_000_000_000));
        assert_eq!(update.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        assert_eq!(container(&spec).stop_grace_period, Some(5_000_000_000));
    }

    #[test]
    fn a_config_reads_back_decoded() {
        let def = ConfigDef {
            name: "demo-east-proxy-1".into(),
            labels: BTreeMap::from([("com.docker.interlock.managed-by".into(), "interlock".into())]),
            data: b"events {}\n".to_vec(),
        };
        let config = Config {
            id: Some("cfg-1".into()),
            version: Some(ObjectVersion { index: Some(7) }),
            spec: Some(config_spec(&def)),
            ..Default::default()
        };
        let facts = config_facts(config);
        assert_eq!((facts.name, facts.labels, facts.data), (def.name, def.labels, def.data));
        assert_eq!((facts.id.as_str(), facts.version), ("cfg-1", 7));
    }

    #[test]
    fn a_secret_spec_carries_name_labels_and_base64_data() {
        let def = SecretDef {
            name: "ext-token".into(),
            labels: BTreeMap::from([("com.docker.interlock.managed-by".into(), "interlock".into())]),
            data: b"s3cr3t\n".to_vec(),
        };
        let spec = secret_spec(&def);
        assert_eq!(spec.name.as_deref(), Some("ext-token"));
        assert_eq!(spec.labels, Some(HashMap::from([("com.docker.interlock.managed-by".into(), "interlock".into())])));
        assert_eq!(spec.data.as_deref(), Some("czNjcjN0Cg=="));
    }

    #[test]
    fn a_listed_container_reads_its_task_node_and_service_from_its_labels() {
        let labels = HashMap::from([
            ("com.docker.swarm.service.name".to_owned(), "proxy".to_owned()),
            ("com.docker.swarm.task.id".to_owned(), "t1".to_owned()),
            ("com.docker.swarm.node.id".to_owned(), "n1".to_owned()),
            ("other".to_owned(), "x".to_owned()),
        ]);
        let summary = ContainerSummary { id: Some("c1".into()), labels: Some(labels), ..Default::default() };
        let want = LocalContainer {
            id: "c1".into(),
            task_id: Some("t1".into()),
            node_id: Some("n1".into()),
            service: "proxy".into(),
        };
        assert_eq!(local_container(summary), want);
        let bare = local_container(ContainerSummary { id: Some("c2".into()), ..Default::default() });
        assert_eq!((bare.task_id, bare.node_id, bare.service.as_str()), (None, None, ""));
    }

    #[test]
    fn node_local_filters_name_the_service_label() {
        let running = running_containers_filter("p");
        assert_eq!(running["label"], ["com.docker.swarm.service.name=p"]);
        assert_eq!(running["status"], ["running"]);
        let starts = container_starts_filter("p");
        assert_eq!(
            (starts["type"].as_slice(), starts["event"].as_slice()),
            (&["container".to_owned()][..], &["start".to_owned()][..])
        );
        assert_eq!(starts["label"], ["com.docker.swarm.service.name=p"]);
    }

    #[test]
    fn only_container_start_events_name_a_started_container() {
        let event = |typ, action: &str, id: Option<&str>| EventMessage {
            typ: Some(typ),
            action: Some(action.to_owned()),
            actor: Some(bollard::models::EventActor { id: id.map(str::to_owned), attributes: None }),
            ..Default::default()
        };
        assert_eq!(started_container(event(EventMessageTypeEnum::CONTAINER, "start", Some("c1"))), Some("c1".into()));
        assert_eq!(started_container(event(EventMessageTypeEnum::CONTAINER, "exec_start: nginx -t", Some("c1"))), None);
        assert_eq!(started_container(event(EventMessageTypeEnum::CONTAINER, "start", None)), None);
        assert_eq!(started_container(event(EventMessageTypeEnum::SERVICE, "start", Some("s1"))), None);
    }

    #[test]
    fn a_node_label_update_replaces_the_labels_and_keeps_role_and_availability() {
        let current = NodeSpec {
            name: Some("edge".into()),
            labels: Some(HashMap::from([("old".into(), "1".into()), ("hand".into(), "2".into())])),
            role: Some(NodeSpecRoleEnum::MANAGER),
            availability: Some(NodeSpecAvailabilityEnum::DRAIN),
        };
        let labels = BTreeMap::from([("hand".to_owned(), "2".to_owned()), ("region".to_owned(), "us-east".to_owned())]);
        let spec = node_spec_with_labels(current, &labels);
        assert_eq!(spec.labels.unwrap().into_iter().collect::<BTreeMap<_, _>>(), labels);
        assert_eq!(spec.role, Some(NodeSpecRoleEnum::MANAGER));
        assert_eq!(spec.availability, Some(NodeSpecAvailabilityEnum::DRAIN));
        assert_eq!(spec.name.as_deref(), Some("edge"));
    }
}
