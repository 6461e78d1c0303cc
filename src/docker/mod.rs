//! The Docker adapter: the only module that knows bollard (and, in `tasks`, the Engine's raw
//! task JSON).
//!
//! It connects to the engine named by the config (or `DOCKER_HOST`), translates between
//! bollard's generated models and the core's plain types in `reconcilers::swarm`, classifies
//! errors into what the caller can act on, and bounds every short call with a timeout (bollard's
//! own timeout covers only response headers, and the events stream has none).

mod tasks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EventMessage,
    EventMessageTypeEnum, LocalNodeState, Mount, MountType, NetworkAttachmentConfig, NetworkCreateRequest, Node,
    NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, Service, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
};
use bollard::query_parameters::{
    EventsOptions, ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions, ListServicesOptions,
    UpdateServiceOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::{Stream, StreamExt};
use reconcilers::config::{DockerUrl, TlsFiles};
use reconcilers::desired::Observed;
use reconcilers::swarm::{
    BindMount, ConfigDef, ConfigFacts, ConfigMount, EngineFacts, Field, NetworkDef, NetworkFacts, NodeAvailability,
    NodeFacts, NodeRole, ObjectKind, PortDef, PublishMode, SecretMount, ServiceDef, ServiceFacts, SwarmEvent,
    SwarmMembership, TaskFacts, UpdatePolicy,
};

/// bollard's backstop timeout (seconds) for a response's headers.
const CLIENT_TIMEOUT_SECS: u64 = 60;
/// Our bound on one short request (list, inspect, create, update, delete).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to Docker, classified for the caller's error policy.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {reason}. Is dockerd running, and is DockerURL (or DOCKER_HOST) right?"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "TLS connection to {endpoint} failed: {reason}. Check TLSCACert, TLSCert and TLSKey (PEM files readable by interlock)."
    )]
    Tls { endpoint: String, reason: String },
    #[error(
        "the engine at {endpoint} is not a swarm manager ({state}). Run interlock on a manager node (constraint node.role==manager), or run `docker swarm init` first."
    )]
    NotManager { endpoint: String, state: String },
    #[error("{operation}: not found")]
    NotFound { operation: String },
    #[error("{operation}: name already in use")]
    Conflict { operation: String },
    #[error("{operation}: update out of sequence (the object changed since it was read)")]
    OutOfSequence { operation: String },
    #[error("{operation}: the engine answered {status}: {message}")]
    Rejected { operation: String, status: u16, message: String },
    #[error("{operation}: no answer within {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    #[error("{operation}: {source}")]
    Transport {
        operation: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl DockerError {
    /// Worth retrying after a pause: the engine may answer differently next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. }
                | DockerError::OutOfSequence { .. }
                | DockerError::Timeout { .. }
                | DockerError::Transport { .. }
        ) || matches!(self, DockerError::Rejected { status, .. } if *status >= 500)
    }

    fn classify(operation: &str, endpoint: &str, error: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        let operation = operation.to_owned();
        match error {
            E::DockerResponseServerError { status_code: 404, .. } => DockerError::NotFound { operation },
            E::DockerResponseServerError { status_code: 409, .. } => DockerError::Conflict { operation },
            E::DockerResponseServerError { status_code, message } if message.contains("update out of sequence") => {
                let _ = status_code;
                DockerError::OutOfSequence { operation }
            }
            E::DockerResponseServerError { status_code: 503, message } if message.contains("not a swarm manager") => {
                DockerError::NotManager { endpoint: endpoint.to_owned(), state: message }
            }
            E::DockerResponseServerError { status_code, message } => {
                DockerError::Rejected { operation, status: status_code, message }
            }
            E::IOError { err } => DockerError::Unreachable { endpoint: endpoint.to_owned(), reason: err.to_string() },
            E::SocketNotFoundError(path) => {
                DockerError::Unreachable { endpoint: endpoint.to_owned(), reason: format!("no socket at {path}") }
            }
            E::HyperLegacyError { err } if err.is_connect() => {
                let reason = std::error::Error::source(&err).map_or_else(|| err.to_string(), ToString::to_string);
                if reason.to_ascii_lowercase().contains("certificate") || reason.contains("tls") {
                    DockerError::Tls { endpoint: endpoint.to_owned(), reason }
                } else {
                    DockerError::Unreachable { endpoint: endpoint.to_owned(), reason }
                }
            }
            E::CertPathError { path } | E::CertParseError { path } => DockerError::Tls {
                endpoint: endpoint.to_owned(),
                reason: format!("cannot read or parse {}", path.display()),
            },
            E::RequestTimeoutError => DockerError::Timeout { operation, seconds: CLIENT_TIMEOUT_SECS },
            source => DockerError::Transport { operation, source },
        }
    }
}

/// A connection to one Docker engine. Cheap to clone; share one.
#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
    raw: tasks::RawEndpoint,
    endpoint: String,
    counters: Arc<RequestCounters>,
}

/// Requests sent, by kind: what a pass costs, and proof that a converged pass writes nothing.
#[derive(Debug, Default)]
pub struct RequestCounters {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl RequestCounters {
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl DockerClient {
    /// Connects to `url` (the config's `DockerURL`), else `DOCKER_HOST`, else the local socket.
    /// Nothing is sent yet: the first call shows whether the engine answers.
    pub fn connect(url: Option<&DockerUrl>, tls: &TlsFiles) -> Result<Self, DockerError> {
        let url = match url {
            Some(url) => url.clone(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(host) if !host.is_empty() => DockerUrl::parse(&host)
                    .map_err(|reason| DockerError::Unreachable { endpoint: host.clone(), reason })?,
                _ => DockerUrl::Unix("/var/run/docker.sock".to_owned()),
            },
        };
        let endpoint = url.to_string();
        let connected = match (&url, tls.is_empty()) {
            (DockerUrl::Unix(path), _) => Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION),
            (DockerUrl::Tcp(addr), true) => {
                Docker::connect_with_http(&format!("tcp://{addr}"), CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
            }
            (DockerUrl::Tcp(addr), false) => {
                let file = |f: &Option<String>| Path::new(f.as_deref().unwrap_or_default()).to_owned();
                Docker::connect_with_ssl(
                    &format!("tcp://{addr}"),
                    &file(&tls.key),
                    &file(&tls.cert),
                    &file(&tls.ca_cert),
                    CLIENT_TIMEOUT_SECS,
                    API_DEFAULT_VERSION,
                )
            }
        };
        let docker = connected.map_err(|e| DockerError::classify("connect", &endpoint, e))?;
        let raw = tasks::RawEndpoint::new(&url, tls)
            .map_err(|reason| DockerError::Tls { endpoint: endpoint.clone(), reason })?;
        Ok(Self { docker, raw, endpoint, counters: Arc::default() })
    }

    /// Requests sent so far through this client and its clones.
    pub fn counters(&self) -> &RequestCounters {
        &self.counters
    }

    /// The engine's address as given, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one short request under [`CALL_TIMEOUT`], classifying its error. Operations named
    /// like writes (`create`, `update`, `delete`) count as writes.
    async fn call<T>(
        &self,
        operation: &str,
        request: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        let counter = if ["create ", "update ", "delete "].iter().any(|w| operation.starts_with(w)) {
            &self.counters.writes
        } else {
            &self.counters.reads
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(result) => result.map_err(|e| DockerError::classify(operation, &self.endpoint, e)),
            Err(_) => Err(DockerError::Timeout { operation: operation.to_owned(), seconds: CALL_TIMEOUT.as_secs() }),
        }
    }

    /// Engine version and this node's place in the swarm.
    pub async fn engine(&self) -> Result<EngineFacts, DockerError> {
        let version = self.call("read the engine version", self.docker.version()).await?;
        let info = self.call("read the engine info", self.docker.info()).await?;
        let swarm = info.swarm.unwrap_or_default();
        let node_id = swarm.node_id.unwrap_or_default();
        let membership = match swarm.local_node_state {
            Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => {
                SwarmMembership::Manager { node_id }
            }
            Some(LocalNodeState::ACTIVE) => SwarmMembership::Worker { node_id },
            Some(LocalNodeState::INACTIVE) | Some(LocalNodeState::EMPTY) | None => SwarmMembership::None,
            Some(other) => SwarmMembership::Other { state: other.to_string() },
        };
        Ok(EngineFacts {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            name: info.name.unwrap_or_default(),
            swarm: membership,
        })
    }

    /// Fails with [`DockerError::NotManager`] unless this engine manages the swarm.
    pub async fn require_manager(&self) -> Result<EngineFacts, DockerError> {
        let engine = self.engine().await?;
        let state = match &engine.swarm {
            SwarmMembership::Manager { .. } => return Ok(engine),
            SwarmMembership::None => "not in a swarm".to_owned(),
            SwarmMembership::Worker { .. } => "a worker".to_owned(),
            SwarmMembership::Other { state } => format!("swarm state {state}"),
        };
        Err(DockerError::NotManager { endpoint: self.endpoint.clone(), state })
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeFacts>, DockerError> {
        let nodes = self.call("list nodes", self.docker.list_nodes(None::<ListNodesOptions>)).await?;
        let mut facts: Vec<NodeFacts> = nodes.into_iter().map(node_facts).collect();
        facts.sort_by(|a, b| (a.role, &a.hostname).cmp(&(b.role, &b.hostname)));
        Ok(facts)
    }

    /// Services carrying `label` (`key` or `key=value`); every service when `label` is empty.
    pub async fn list_services(&self, label: &str) -> Result<Vec<ServiceFacts>, DockerError> {
        let filters = (!label.is_empty()).then(|| label_filter(label));
        let options = ListServicesOptions { filters, status: None };
        let services = self.call("list services", self.docker.list_services(Some(options))).await?;
        Ok(services.into_iter().map(service_facts).collect())
    }

    /// Every task the swarm knows, with its addresses on each network.
    pub async fn list_tasks(&self) -> Result<Vec<TaskFacts>, DockerError> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let operation = "list tasks";
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.raw.get("/tasks"))
            .await
            .map_err(|_| DockerError::Timeout { operation: operation.to_owned(), seconds: CALL_TIMEOUT.as_secs() })?;
        let body = answer.map_err(|e| match e {
            tasks::RawError::Connect(reason) => DockerError::Unreachable { endpoint: self.endpoint.clone(), reason },
            tasks::RawError::Status(status, message) => {
                DockerError::Rejected { operation: operation.to_owned(), status, message }
            }
        })?;
        tasks::parse_tasks(&body).map_err(|message| DockerError::Rejected {
            operation: operation.to_owned(),
            status: 0,
            message,
        })
    }

    /// Every network, with the facts routing needs.
    pub async fn list_networks(&self) -> Result<Vec<NetworkFacts>, DockerError> {
        let networks = self.call("list networks", self.docker.list_networks(None::<ListNetworksOptions>)).await?;
        Ok(networks
            .into_iter()
            .map(|n| NetworkFacts {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                driver: n.driver.unwrap_or_default(),
                scope: n.scope.unwrap_or_default(),
                ingress: n.ingress.unwrap_or_default(),
                labels: sorted(n.labels),
            })
            .collect())
    }

    /// Creates an attachable overlay network; returns its ID.
    pub async fn create_network(&self, def: &NetworkDef) -> Result<String, DockerError> {
        let request = NetworkCreateRequest {
            name: def.name.clone(),
            driver: Some("overlay".to_owned()),
            attachable: Some(def.attachable),
            labels: Some(def.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let operation = format!("create network {}", def.name);
        Ok(self.call(&operation, self.docker.create_network(request)).await?.id)
    }

    /// Names of every secret (their content never leaves the engine).
    pub async fn list_secrets(&self) -> Result<Vec<String>, DockerError> {
        let secrets = self.call("list secrets", self.docker.list_secrets(None::<ListSecretsOptions>)).await?;
        Ok(secrets.into_iter().filter_map(|s| s.spec.and_then(|spec| spec.name)).collect())
    }

    /// One fresh read of everything a pass decides from: six list requests.
    pub async fn observe(&self, managed_label: &str) -> Result<Observed, DockerError> {
        let (nodes, services, tasks, networks, configs, secrets) = tokio::try_join!(
            self.list_nodes(),
            self.list_services(""),
            self.list_tasks(),
            self.list_networks(),
            self.list_configs(managed_label),
            self.list_secrets(),
        )?;
        Ok(Observed { nodes, services, tasks, networks, configs, secrets })
    }

    /// The service named `name`, if it exists.
    pub async fn inspect_service(&self, name: &str) -> Result<Option<ServiceFacts>, DockerError> {
        let operation = format!("inspect service {name}");
        match self.call(&operation, self.docker.inspect_service(name, None)).await {
            Ok(service) => Ok(Some(service_facts(service))),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a service; returns its ID.
    pub async fn create_service(&self, def: &ServiceDef) -> Result<String, DockerError> {
        let operation = format!("create service {}", def.name);
        let config_ids = self.config_ids(def).await?;
        let created = self.call(&operation, self.docker.create_service(service_spec(def, &config_ids), None)).await?;
        Ok(created.id.unwrap_or_default())
    }

    /// Updates the service at `version` (Swarm's optimistic lock): the fields in `def.managed`,
    /// its labels and its environment come from `def`; everything else stays as the current spec
    /// has it, including what a `ServiceDef` does not model (resources, health checks, ...), so
    /// whatever an operator tuned by hand survives. One extra read per write.
    pub async fn update_service(&self, name_or_id: &str, version: u64, def: &ServiceDef) -> Result<(), DockerError> {
        let operation = format!("update service {name_or_id}");
        let config_ids = self.config_ids(def).await?;
        let version = i32::try_from(version).map_err(|_| DockerError::Rejected {
            operation: operation.clone(),
            status: 0,
            message: format!("version {version} does not fit the API's i32"),
        })?;
        let current =
            self.call(&format!("inspect service {name_or_id}"), self.docker.inspect_service(name_or_id, None)).await?;
        let spec = overlay(current.spec.unwrap_or_default(), service_spec(def, &config_ids), def);
        let options = UpdateServiceOptions { version, registry_auth_from: "spec".to_owned(), rollback: None };
        self.call(&operation, self.docker.update_service(name_or_id, spec, options, None)).await?;
        Ok(())
    }

    /// IDs of the configs and secrets a definition mounts, looked up by name (writes only; rare).
    async fn config_ids(&self, def: &ServiceDef) -> Result<BTreeMap<String, String>, DockerError> {
        let mut ids = BTreeMap::new();
        for mount in &def.configs {
            let operation = format!("inspect config {}", mount.config_name);
            let config = self.call(&operation, self.docker.inspect_config(&mount.config_name)).await?;
            ids.insert(mount.config_name.clone(), config.id.unwrap_or_default());
        }
        for mount in &def.secrets {
            let operation = format!("inspect secret {}", mount.secret_name);
            let secret = self.call(&operation, self.docker.inspect_secret(&mount.secret_name)).await?;
            ids.insert(format!("secret:{}", mount.secret_name), secret.id.unwrap_or_default());
        }
        Ok(ids)
    }

    pub async fn delete_service(&self, name_or_id: &str) -> Result<(), DockerError> {
        let operation = format!("delete service {name_or_id}");
        self.call(&operation, self.docker.delete_service(name_or_id)).await
    }

    /// Config objects carrying `label` (`key` or `key=value`); every config when `label` is empty.
    pub async fn list_configs(&self, label: &str) -> Result<Vec<ConfigFacts>, DockerError> {
        let options = ListConfigsOptions { filters: (!label.is_empty()).then(|| label_filter(label)) };
        let configs = self.call("list configs", self.docker.list_configs(Some(options))).await?;
        Ok(configs
            .into_iter()
            .map(|c| {
                let spec = c.spec.unwrap_or_default();
                ConfigFacts {
                    id: c.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    labels: sorted(spec.labels),
                    version: c.version.and_then(|v| v.index).unwrap_or_default(),
                    data: spec
                        .data
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Creates a config object; returns its ID.
    pub async fn create_config(&self, def: &ConfigDef) -> Result<String, DockerError> {
        let spec = ConfigSpec {
            name: Some(def.name.clone()),
            labels: Some(def.labels.clone().into_iter().collect()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&def.data)),
            templating: None,
        };
        let operation = format!("create config {}", def.name);
        Ok(self.call(&operation, self.docker.create_config(spec)).await?.id)
    }

    pub async fn delete_config(&self, id: &str) -> Result<(), DockerError> {
        let operation = format!("delete config {id}");
        self.call(&operation, self.docker.delete_config(id)).await
    }

    /// Swarm-scoped events of the given kinds, from the moment of this call. The stream ends
    /// when the engine closes it, and it has no idle timeout: the caller resubscribes and must
    /// not rely on it alone (events can be lost and carry no labels).
    pub fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + use<> {
        let types: Vec<String> = kinds.iter().map(kind_name).collect();
        let filters = HashMap::from([("type".to_owned(), types), ("scope".to_owned(), vec!["swarm".to_owned()])]);
        // bollard sends the request only when the stream is first polled; `since` makes the
        // engine replay what happened in between (it keeps the last 256 events).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let options = EventsOptions { since: Some(since), until: None, filters: Some(filters) };
        let endpoint = self.endpoint.clone();
        self.docker
            .events(Some(options))
            .map(move |item| item.map(swarm_event).map_err(|e| DockerError::classify("watch events", &endpoint, e)))
    }
}

fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label.to_owned()])])
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

fn swarm_event(message: EventMessage) -> SwarmEvent {
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

fn node_facts(node: Node) -> NodeFacts {
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
    }
}

/// The full Swarm spec for a definition. Swarm replaces a spec wholesale on update, so every
/// field the core manages is always sent.
fn service_spec(def: &ServiceDef, config_ids: &BTreeMap<String, String>) -> ServiceSpec {
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
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::try_from(def.replicas).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
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
fn overlay(mut current: ServiceSpec, wanted: ServiceSpec, def: &ServiceDef) -> ServiceSpec {
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
            Field::Replicas => current.mode.clone_from(&wanted.mode),
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
fn service_facts(service: Service) -> ServiceFacts {
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
        args: container.args.unwrap_or_default(),
        env: container.env.unwrap_or_default(),
        container_labels: sorted(container.labels),
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
        managed: BTreeSet::new(),
    };
    ServiceFacts {
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
