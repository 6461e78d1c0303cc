//! [`DockerClient`]: the connection, one method per Docker call the operator makes, the timeout
//! that bounds each short call, and the [`RequestCounters`] each call adds itself to, as a read
//! or as a write, where it is made.
//!
//! Most calls are Swarm calls, made to a manager. The node-local ones (`running_containers`,
//! `write_files`, `exec`, `signal`, `container_starts`) are for `interlock extension`, made to the
//! engine of the node it runs on (see `node`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    EventsOptions, KillContainerOptions, ListConfigsOptions, ListContainersOptions, ListNetworksOptions,
    ListNodesOptions, ListSecretsOptions, ListServicesOptions, UpdateNodeOptions, UpdateServiceOptions,
    UploadToContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::{Stream, StreamExt};
use reconcilers::config::{DockerUrl, TlsFiles};
use reconcilers::observed::{
    ConfigDef, ConfigFacts, EngineFacts, NetworkDef, NetworkFacts, NodeFacts, ObjectKind, Observed, SecretDef,
    ServiceDef, ServiceFacts, SwarmEvent, SwarmMembership, TaskFacts,
};

use super::error::DockerError;
use super::node;
use super::timeouts::{CALL_TIMEOUT, CLIENT_TIMEOUT_SECS, EXEC_TIMEOUT};
use super::{convert, tasks};
use crate::engine::{ExecOutput, LocalContainer};

/// A connection to one Docker engine. Cheap to clone; share one.
#[derive(Clone)]
pub struct DockerClient {
    pub(super) docker: Docker,
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
    pub(super) async fn call_read<T>(
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

    /// The node with this ID or hostname, if it exists.
    pub async fn inspect_node(&self, id: &str) -> Result<Option<NodeFacts>, DockerError> {
        let operation = format!("inspect node {id}");
        match self.call_read(&operation, self.docker.inspect_node(id)).await {
            Ok(node) => Ok(Some(convert::node_facts(node))),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the node's labels with `labels` at `version` (Swarm's optimistic lock). Reads
    /// the current spec first, so its role, availability and name are written back unchanged.
    pub async fn update_node(
        &self,
        id: &str,
        version: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let operation = format!("update node {id}");
        let api_version = i64::try_from(version)
            .map_err(|_| DockerError::VersionOverflow { operation: operation.clone(), version })?;
        let current = self.call_read(&format!("inspect node {id}"), self.docker.inspect_node(id)).await?;
        let spec = convert::node_spec_with_labels(current.spec.unwrap_or_default(), labels);
        let options = UpdateNodeOptions { version: api_version };
        self.call_write(&operation, self.docker.update_node(id, spec, options)).await
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

    /// The last [`TASK_LOG_LINES`] lines a task printed (stdout and stderr): why a proxy task
    /// did not start, in its binary's words. Read once per failed task of a proxy service that
    /// does not start.
    pub async fn task_logs(&self, task_id: &str) -> Result<String, DockerError> {
        let operation = format!("read the logs of task {task_id}");
        self.counters.count(Kind::Read);
        let path = format!("/tasks/{task_id}/logs?stdout=1&stderr=1&tail={TASK_LOG_LINES}");
        let body = tokio::time::timeout(CALL_TIMEOUT, self.raw.get(&path))
            .await
            .map_err(|_| timeout(&operation))?
            .map_err(|e| DockerError::from_raw(&operation, &self.endpoint, e))?;
        Ok(tasks::log_text(&body))
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

    /// Every secret's ID, name and labels (their content never leaves the engine).
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, DockerError> {
        let secrets = self.call_read("list secrets", self.docker.list_secrets(None::<ListSecretsOptions>)).await?;
        Ok(secrets.into_iter().filter_map(convert::secret_facts).collect())
    }

    /// Creates a secret with the definition's name, labels and data (the operator's own, such as
    /// an extension's token); returns its ID.
    pub async fn create_secret(&self, def: &SecretDef) -> Result<String, DockerError> {
        let operation = format!("create secret {}", def.name);
        Ok(self.call_write(&operation, self.docker.create_secret(convert::secret_spec(def))).await?.id)
    }

    /// Removes a secret (by name or ID); fails while a service still mounts it.
    pub async fn delete_secret(&self, name_or_id: &str) -> Result<(), DockerError> {
        let operation = format!("delete secret {name_or_id}");
        self.call_write(&operation, self.docker.delete_secret(name_or_id)).await
    }

    /// The token that joins a node to this swarm as a manager (`GET /swarm`, `JoinTokens.Manager`;
    /// only a manager answers). A credential: never log it.
    pub async fn manager_join_token(&self) -> Result<String, DockerError> {
        let operation = "read the swarm's join tokens";
        let swarm = self.call_read(operation, self.docker.inspect_swarm()).await?;
        swarm.join_tokens.and_then(|t| t.manager).filter(|t| !t.is_empty()).ok_or_else(|| DockerError::Undecodable {
            operation: operation.to_owned(),
            reason: "the answer has no JoinTokens.Manager".to_owned(),
        })
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
        let secret_labels =
            secrets.iter().filter(|s| !s.labels.is_empty()).map(|s| (s.name.clone(), s.labels.clone())).collect();
        let secret_ids = secrets.iter().map(|s| (s.name.clone(), s.id.clone())).collect();
        let secrets = secrets.into_iter().map(|s| s.name).collect();
        Ok(Observed {
            nodes,
            services,
            tasks,
            networks,
            configs,
            secrets,
            secret_labels,
            secret_ids,
            delivered: Default::default(),
            node_names: Default::default(),
        })
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

    /// Makes Swarm schedule the service's tasks anew (`docker service update --force`): its
    /// spec unchanged but `TaskTemplate.ForceUpdate` incremented, at its current version.
    pub async fn force_update(&self, name_or_id: &str) -> Result<(), DockerError> {
        let operation = format!("reschedule service {name_or_id}");
        let inspect = format!("inspect service {name_or_id}");
        let current = self.call_read(&inspect, self.docker.inspect_service(name_or_id, None)).await?;
        let version = current.version.as_ref().and_then(|v| v.index).unwrap_or_default();
        let api_version = i32::try_from(version)
            .map_err(|_| DockerError::VersionOverflow { operation: operation.clone(), version })?;
        let mut spec = current.spec.unwrap_or_default();
        let task = spec.task_template.get_or_insert_with(Default::default);
        task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
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

/// Calls to the engine of the node the caller runs on (see `node`): what `interlock extension`
/// does to the proxy containers beside it.
impl DockerClient {
    /// The running containers of the Swarm service `service_name` on this engine (label
    /// `com.docker.swarm.service.name`, filtered by the engine), with their task and node IDs:
    /// the proxy tasks an extension drives.
    pub async fn running_containers(&self, service_name: &str) -> Result<Vec<LocalContainer>, DockerError> {
        let operation = format!("list the running containers of service {service_name}");
        let options = ListContainersOptions {
            filters: Some(convert::running_containers_filter(service_name)),
            ..Default::default()
        };
        let containers = self.call_read(&operation, self.docker.list_containers(Some(options))).await?;
        Ok(containers.into_iter().map(convert::local_container).collect())
    }

    /// Writes `files` (absolute path, content) into the container, creating missing parent
    /// directories: one tar archive extracted at `/` (`PUT /containers/{id}/archive`, what `docker
    /// cp` uses). Files get mode 0644, owner root; each parent directory's entry says 0755 root,
    /// which extraction also applies to an existing directory (see `node::tar`). A path the
    /// archive cannot hold fails with [`DockerError::InvalidRequest`] before anything is sent.
    pub async fn write_files(&self, container: &str, files: &[(String, Vec<u8>)]) -> Result<(), DockerError> {
        let operation = format!("write {} file(s) into container {container}", files.len());
        let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let archive = node::tar(files, mtime)
            .map_err(|e| DockerError::InvalidRequest { operation: operation.clone(), reason: e.to_string() })?;
        let options = UploadToContainerOptions { path: "/".to_owned(), ..Default::default() };
        let body = bollard::body_full(archive.into());
        self.call_write(&operation, self.docker.upload_to_container(container, Some(options), body)).await
    }

    /// Runs `argv` in the container (no shell, no TTY, no stdin) and waits for it: its exit code
    /// and its stdout and stderr interleaved as they arrived (the first 64 KiB). For a proxy's own
    /// check of a config written by [`write_files`](Self::write_files) (`nginx -t -c ...`,
    /// `haproxy -c -f ...`). The whole call (create, start, run, exit code) is bounded by 60 s.
    pub async fn exec(&self, container: &str, argv: &[String]) -> Result<ExecOutput, DockerError> {
        let operation = format!("exec {} in container {container}", argv.first().map_or("", String::as_str));
        tokio::time::timeout(EXEC_TIMEOUT, self.exec_unbounded(&operation, container, argv))
            .await
            .map_err(|_| DockerError::Timeout { operation: operation.clone(), seconds: EXEC_TIMEOUT.as_secs() })?
    }

    /// [`exec`](Self::exec) without its overall bound: three requests (create, start, inspect)
    /// and, rarely, more inspects while the engine has not yet noted the exit.
    async fn exec_unbounded(
        &self,
        operation: &str,
        container: &str,
        argv: &[String],
    ) -> Result<ExecOutput, DockerError> {
        let created =
            self.call_write(operation, self.docker.create_exec(container, convert::exec_config(argv))).await?;
        let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
        let started = self.call_write(operation, self.docker.start_exec(&created.id, Some(start))).await?;
        let mut output = Vec::new();
        match started {
            StartExecResults::Attached { output: mut stream, .. } => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| DockerError::classify(operation, &self.endpoint, e))?;
                    node::keep_start(&mut output, chunk.as_ref());
                }
            }
            // Only with `detach: true`, which this call does not ask for.
            StartExecResults::Detached => {}
        }
        loop {
            let inspected = self.call_read(operation, self.docker.inspect_exec(&created.id)).await?;
            if inspected.running != Some(true) {
                let exit_code = inspected.exit_code.ok_or_else(|| DockerError::Undecodable {
                    operation: operation.to_owned(),
                    reason: "the exec ended without an exit code".to_owned(),
                })?;
                return Ok(ExecOutput { exit_code, output: String::from_utf8_lossy(&output).into_owned() });
            }
            // The output ends as the process exits; the engine notes the exit a moment later.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (such as `"SIGHUP"`) to the container's main process (the kill API): how a
    /// proxy is told to reload the config [`write_files`](Self::write_files) put in place.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let operation = format!("send {signal} to container {container}");
        let options = KillContainerOptions { signal: signal.to_owned() };
        self.call_write(&operation, self.docker.kill_container(container, Some(options))).await
    }

    /// The IDs of containers of the Swarm service `service_name` as this engine starts them, from
    /// the moment of this call (like [`events`](Self::events), which says why): a new proxy task
    /// on this node, to be given the current config. The stream ends when the engine closes it
    /// and has no idle timeout; the caller resubscribes, and lists
    /// ([`running_containers`](Self::running_containers)) rather than trust it alone. Not counted.
    pub fn container_starts(
        &self,
        service_name: &str,
    ) -> impl Stream<Item = Result<String, DockerError>> + Send + 'static + use<> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let filters = convert::container_starts_filter(service_name);
        let options = EventsOptions { since: Some(since), until: None, filters: Some(filters) };
        let endpoint = self.endpoint.clone();
        self.docker.events(Some(options)).filter_map(move |item| {
            std::future::ready(match item {
                Ok(message) => convert::started_container(message).map(Ok),
                Err(e) => Some(Err(DockerError::classify("watch container starts", &endpoint, e))),
            })
        })
    }
}

/// A secret as the list call gives it: never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// How many of a task's last lines [`DockerClient::task_logs`] reads.
const TASK_LOG_LINES: usize = 40;

/// `operation` got no answer within [`CALL_TIMEOUT`].
fn timeout(operation: &str) -> DockerError {
    DockerError::Timeout { operation: operation.to_owned(), seconds: CALL_TIMEOUT.as_secs() }
}
