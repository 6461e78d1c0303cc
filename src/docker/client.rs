//! [`DockerClient`]: the connection, one method per Docker call the operator makes, the timeout
//! that bounds each short call, and the [`RequestCounters`] each call adds itself to, as a read
//! or as a write, where it is made.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::query_parameters::{
    EventsOptions, ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions, ListServicesOptions,
    UpdateServiceOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::{Stream, StreamExt};
use reconcilers::config::{DockerUrl, TlsFiles};
use reconcilers::desired::Observed;
use reconcilers::swarm::{
    ConfigDef, ConfigFacts, EngineFacts, NetworkDef, NetworkFacts, NodeFacts, ObjectKind, ServiceDef, ServiceFacts,
    SwarmEvent, SwarmMembership, TaskFacts,
};

use super::error::DockerError;
use super::{convert, tasks};

/// bollard's backstop timeout (seconds) for a response's headers.
pub(super) const CLIENT_TIMEOUT_SECS: u64 = 60;
/// Our bound on one short request (list, inspect, create, update, delete).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Whether a request changes the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl RequestCounters {
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn count(&self, kind: Kind) {
        let counter = match kind {
            Kind::Read => &self.reads,
            Kind::Write => &self.writes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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

    /// Sends one short request that only reads.
    async fn call_read<T>(
        &self,
        operation: &str,
        request: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.call(Kind::Read, operation, request).await
    }

    /// Sends one short request that changes the swarm.
    async fn call_write<T>(
        &self,
        operation: &str,
        request: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.call(Kind::Write, operation, request).await
    }

    /// Counts one request of `kind`, runs it under [`CALL_TIMEOUT`] and classifies its error.
    async fn call<T>(
        &self,
        kind: Kind,
        operation: &str,
        request: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.counters.count(kind);
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(result) => result.map_err(|e| DockerError::classify(operation, &self.endpoint, e)),
            Err(_) => Err(timeout(operation)),
        }
    }

    /// Engine version and this node's place in the swarm.
    pub async fn engine(&self) -> Result<EngineFacts, DockerError> {
        let version = self.call_read("read the engine version", self.docker.version()).await?;
        let info = self.call_read("read the engine info", self.docker.info()).await?;
        Ok(convert::engine_facts(version, info))
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
        let nodes = self.call_read("list nodes", self.docker.list_nodes(None::<ListNodesOptions>)).await?;
        let mut facts: Vec<NodeFacts> = nodes.into_iter().map(convert::node_facts).collect();
        facts.sort_by(|a, b| (a.role, &a.hostname).cmp(&(b.role, &b.hostname)));
        Ok(facts)
    }

    /// Services carrying `label` (`key` or `key=value`); every service when `label` is empty.
    pub async fn list_services(&self, label: &str) -> Result<Vec<ServiceFacts>, DockerError> {
        let filters = (!label.is_empty()).then(|| convert::label_filter(label));
        let options = ListServicesOptions { filters, status: None };
        let services = self.call_read("list services", self.docker.list_services(Some(options))).await?;
        let mut services: Vec<ServiceFacts> = services.into_iter().map(convert::service_facts).collect();
        // Which spec Swarm rolled back from, for services whose last update was rolled back
        // (rare: one extra read each).
        for service in
            services.iter_mut().filter(|s| s.update_state.as_deref().is_some_and(|u| u.starts_with("rollback")))
        {
            service.previous_spec_hash = self.previous_spec_hash(&service.id).await?;
        }
        Ok(services)
    }

    /// `PreviousSpec`'s spec-hash label, read raw: bollard's `Service` model has no PreviousSpec.
    async fn previous_spec_hash(&self, id: &str) -> Result<Option<String>, DockerError> {
        let operation = format!("inspect service {id}");
        self.counters.count(Kind::Read);
        let body = tokio::time::timeout(CALL_TIMEOUT, self.raw.get(&format!("/services/{id}")))
            .await
            .map_err(|_| timeout(&operation))?
            .map_err(|e| DockerError::from_raw(&operation, &self.endpoint, e))?;
        convert::previous_spec_hash(&body)
            .map_err(|reason| DockerError::Undecodable { operation: operation.clone(), reason })
    }

    /// Every task the swarm knows, with its addresses on each network (read without bollard:
    /// see `tasks`).
    pub async fn list_tasks(&self) -> Result<Vec<TaskFacts>, DockerError> {
        let operation = "list tasks";
        self.counters.count(Kind::Read);
        let body = tokio::time::timeout(CALL_TIMEOUT, self.raw.get("/tasks"))
            .await
            .map_err(|_| timeout(operation))?
            .map_err(|e| DockerError::from_raw(operation, &self.endpoint, e))?;
        tasks::parse_tasks(&body).map_err(|reason| DockerError::Undecodable { operation: operation.to_owned(), reason })
    }

    /// Every network, with the facts routing needs.
    pub async fn list_networks(&self) -> Result<Vec<NetworkFacts>, DockerError> {
        let networks = self.call_read("list networks", self.docker.list_networks(None::<ListNetworksOptions>)).await?;
        Ok(networks.into_iter().map(convert::network_facts).collect())
    }

    /// Creates an attachable overlay network; returns its ID.
    pub async fn create_network(&self, def: &NetworkDef) -> Result<String, DockerError> {
        let operation = format!("create network {}", def.name);
        Ok(self.call_write(&operation, self.docker.create_network(convert::network_request(def))).await?.id)
    }

    /// Names of every secret (their content never leaves the engine).
    /// Every secret's name and labels.
    pub async fn list_secrets(&self) -> Result<Vec<(String, BTreeMap<String, String>)>, DockerError> {
        let secrets = self.call_read("list secrets", self.docker.list_secrets(None::<ListSecretsOptions>)).await?;
        Ok(secrets.into_iter().filter_map(convert::secret_facts).collect())
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
        let secret_labels = secrets.iter().filter(|(_, l)| !l.is_empty()).cloned().collect();
        let secrets = secrets.into_iter().map(|(name, _)| name).collect();
        Ok(Observed { nodes, services, tasks, networks, configs, secrets, secret_labels })
    }

    /// The service named `name`, if it exists.
    pub async fn inspect_service(&self, name: &str) -> Result<Option<ServiceFacts>, DockerError> {
        let operation = format!("inspect service {name}");
        match self.call_read(&operation, self.docker.inspect_service(name, None)).await {
            Ok(service) => Ok(Some(convert::service_facts(service))),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a service; returns its ID. Reads first: one per config and secret it mounts.
    pub async fn create_service(&self, def: &ServiceDef) -> Result<String, DockerError> {
        let operation = format!("create service {}", def.name);
        let config_ids = self.config_ids(def).await?;
        let spec = convert::service_spec(def, &config_ids);
        let created = self.call_write(&operation, self.docker.create_service(spec, None)).await?;
        Ok(created.id.unwrap_or_default())
    }

    /// Updates the service at `version` (Swarm's optimistic lock): the fields in `def.managed`,
    /// its labels and its environment come from `def`; everything else stays as the current spec
    /// has it, including what a `ServiceDef` does not model (resources, health checks, ...), so
    /// whatever an operator tuned by hand survives (see [`convert::overlay`]).
    ///
    /// Reads first: one per config and secret it mounts, and the current spec. Fails with
    /// [`DockerError::VersionOverflow`], sending nothing, when `version` exceeds the API's `i32`.
    pub async fn update_service(&self, name_or_id: &str, version: u64, def: &ServiceDef) -> Result<(), DockerError> {
        let operation = format!("update service {name_or_id}");
        let api_version = i32::try_from(version)
            .map_err(|_| DockerError::VersionOverflow { operation: operation.clone(), version })?;
        let config_ids = self.config_ids(def).await?;
        let inspect = format!("inspect service {name_or_id}");
        let current = self.call_read(&inspect, self.docker.inspect_service(name_or_id, None)).await?;
        let spec = convert::overlay(current.spec.unwrap_or_default(), convert::service_spec(def, &config_ids), def);
        let options =
            UpdateServiceOptions { version: api_version, registry_auth_from: "spec".to_owned(), rollback: None };
        self.call_write(&operation, self.docker.update_service(name_or_id, spec, options, None)).await?;
        Ok(())
    }

    /// IDs of the configs and secrets a definition mounts, looked up by name (before writes
    /// only; rare), keyed as [`convert::service_spec`] expects.
    async fn config_ids(&self, def: &ServiceDef) -> Result<BTreeMap<String, String>, DockerError> {
        let mut ids = BTreeMap::new();
        for mount in &def.configs {
            let operation = format!("inspect config {}", mount.config_name);
            let config = self.call_read(&operation, self.docker.inspect_config(&mount.config_name)).await?;
            ids.insert(mount.config_name.clone(), config.id.unwrap_or_default());
        }
        for mount in &def.secrets {
            let operation = format!("inspect secret {}", mount.secret_name);
            let secret = self.call_read(&operation, self.docker.inspect_secret(&mount.secret_name)).await?;
            ids.insert(format!("secret:{}", mount.secret_name), secret.id.unwrap_or_default());
        }
        Ok(ids)
    }

    pub async fn delete_service(&self, name_or_id: &str) -> Result<(), DockerError> {
        let operation = format!("delete service {name_or_id}");
        self.call_write(&operation, self.docker.delete_service(name_or_id)).await
    }

    /// Config objects carrying `label` (`key` or `key=value`); every config when `label` is empty.
    pub async fn list_configs(&self, label: &str) -> Result<Vec<ConfigFacts>, DockerError> {
        let options = ListConfigsOptions { filters: (!label.is_empty()).then(|| convert::label_filter(label)) };
        let configs = self.call_read("list configs", self.docker.list_configs(Some(options))).await?;
        Ok(configs.into_iter().map(convert::config_facts).collect())
    }

    /// Creates a config object; returns its ID.
    pub async fn create_config(&self, def: &ConfigDef) -> Result<String, DockerError> {
        let operation = format!("create config {}", def.name);
        Ok(self.call_write(&operation, self.docker.create_config(convert::config_spec(def))).await?.id)
    }

    pub async fn delete_config(&self, id: &str) -> Result<(), DockerError> {
        let operation = format!("delete config {id}");
        self.call_write(&operation, self.docker.delete_config(id)).await
    }

    /// Swarm-scoped events of the given kinds, from the moment of this call. The stream ends
    /// when the engine closes it, and it has no idle timeout: the caller resubscribes and must
    /// not rely on it alone (events can be lost and carry no labels). Not counted: a
    /// subscription, not a request of a pass.
    pub fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + use<> {
        // bollard sends the request only when the stream is first polled; `since` makes the
        // engine replay what happened in between (it keeps the last 256 events).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let options = EventsOptions { since: Some(since), until: None, filters: Some(convert::events_filter(kinds)) };
        let endpoint = self.endpoint.clone();
        self.docker.events(Some(options)).map(move |item| {
            item.map(convert::swarm_event).map_err(|e| DockerError::classify("watch events", &endpoint, e))
        })
    }
}

/// `operation` got no answer within [`CALL_TIMEOUT`].
fn timeout(operation: &str) -> DockerError {
    DockerError::Timeout { operation: operation.to_owned(), seconds: CALL_TIMEOUT.as_secs() }
}
