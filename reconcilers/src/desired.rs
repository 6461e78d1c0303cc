//! Desired state: from the config and a fresh observation of the swarm, the objects that must
//! exist. One [`ClusterState`] per extension: its extension service, its proxy service (ONE
//! spec composing placement, ports, networks and the config mount), the proxy config object, the
//! routes it was rendered from, and the proxy kind. What differs by kind (renderer, TLS secret
//! layout, passthrough support, the hitless layout) comes from [`crate::proxy`]. Beside the
//! clusters: the labels `[NodeLabels]` declares per node ([`crate::node_labels`]) and the
//! `DriftPolicy`. The ownership labels it writes are [`crate::ownership`]'s; what it reads is
//! [`crate::observed`]'s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::acme::{self, ClusterAcme, ProxyAcme, Retire};
use crate::config::{Config, DriftPolicy, Extension, ProxyKind};
use crate::node_labels::{self, DesiredNodeLabels};
use crate::observed::{
    BindMount, ConfigDef, ConfigMount, Field, NetworkDef, Observed, PortDef, PublishMode, SecretDef, SecretMount,
    ServiceDef, ServiceFacts, UpdatePolicy,
};
use crate::ownership::{
    LABEL_CONFIG_GENERATION, LABEL_CONFIG_HASH, LABEL_CORE_SERVICE, LABEL_EXTENSION, LABEL_MANAGED_BY,
    LABEL_MANAGED_FIELDS, LABEL_MANAGED_LABELS, LABEL_PROXY_KIND, LABEL_ROLE, LABEL_SPEC_HASH, LABEL_TYPE,
    LABEL_UNLOADABLE_SECRETS, MANAGED_BY, MAX_CONFIG_SIZE, OWN_LABEL_PREFIX, TYPE_EXTENSION, TYPE_PROXY, is_owned,
    sha256_hex,
};
use crate::proxy;
use crate::routes::{self, Quarantined, RouteTable, Timestamp};

/// Where an extension's token secret is mounted (under `/run/secrets/`).
pub const TOKEN_SECRET_TARGET: &str = "interlock-extension-token";
/// The node's Docker socket, bind-mounted into hitless extensions.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The generation of a hitless cluster's config `hash` (pure): the newest generation known
/// (recorded on the proxy service, or served or run by its tasks) when that one is `hash`,
/// else one more. So generations only grow, a config keeps its generation from pass to pass,
/// and a new active replica that renders another config than the old one served gives it a
/// later generation, never the same one.
///
/// A known generation with an empty hash stands for two configs seen under it (two writers a
/// moment apart): no config keeps it, the next is one more. At the end of the count (never
/// reached in practice: one per change) it stays there.
pub fn config_generation(recorded: Option<(u64, &str)>, delivered: Option<(u64, &str)>, hash: &str) -> u64 {
    let known = [recorded, delivered];
    let newest = known.iter().flatten().map(|(generation, _)| *generation).max().unwrap_or(0);
    let at_newest = || known.iter().flatten().filter(|(generation, _)| *generation == newest);
    let split = at_newest().any(|(_, h)| h.is_empty());
    if newest > 0 && !split && at_newest().any(|(_, h)| *h == hash) { newest } else { newest.saturating_add(1) }
}

/// Facts about where the operator runs, supplied by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The overlay network extensions join to reach the core (`interlock` in the walk-through).
    pub operator_network: String,
    /// What extensions are told to call (`EndpointOverride`, else the core's service and port).
    pub core_endpoint: String,
    /// `x-server-info` header value.
    pub server_info: String,
    /// The key extensions' tokens are derived from (`token::extension_token`): a secret only
    /// managers can read. Empty: no hitless extension can be given a token.
    pub extension_key: String,
    /// The Swarm service the operator runs as, when the shell could tell: extensions are told
    /// `<it>:<ListenAddr port>` when there is no `EndpointOverride`.
    pub core_service: Option<String>,
    /// Whether `core_endpoint` is known (`EndpointOverride`, or the core's own service): else
    /// an existing extension keeps the endpoint it was given.
    pub endpoint_known: bool,
    /// The image the operator itself runs from, when the shell could tell (it runs as a Swarm
    /// task): what the statistics agent runs when there is no extension (whose `Image`, also
    /// interlock's, comes first).
    pub core_image: Option<String>,
    /// The time of the pass (the shell's clock): what ACME certificates' expiry is judged
    /// against. The epoch until the shell sets it (nothing is then due for renewal).
    pub now: Timestamp,
    /// ACME HTTP-01 answers the shell publishes while an order waits for its challenge: token →
    /// key authorization. Served by the proxies of every cluster with a host wanting a
    /// certificate; only well-formed ones are rendered (`acme::valid_answer`).
    pub acme_answers: BTreeMap<String, String>,
    /// The content (chain then key, PEM) of the ACME certificates the shell could read back
    /// (their sealed copies), by object name: what a hitless delivery writes into the tasks. A
    /// hitless cluster serves only certificates whose content is here.
    pub acme_certificates: BTreeMap<String, Vec<u8>>,
    /// By extension, the secrets (by name) its proxy tasks were found this pass unable to load
    /// (the shell reads a task's rejection or a rolled-back update's output:
    /// `proxy::secret_blame`). Recorded on the proxy service with those recorded before.
    pub unloadable_secrets: BTreeMap<String, BTreeSet<proxy::secret_blame::SecretUse>>,
}

impl Environment {
    pub fn new(config: &Config) -> Self {
        Self {
            operator_network: "interlock".to_owned(),
            core_endpoint: config
                .endpoint_override
                .clone()
                .unwrap_or_else(|| format!("interlock:{}", config.listen_addr.port)),
            server_info: format!("interlock/{}", env!("CARGO_PKG_VERSION")),
            extension_key: String::new(),
            core_image: None,
            core_service: None,
            endpoint_known: config.endpoint_override.is_some(),
            now: Timestamp::UNIX_EPOCH,
            acme_answers: BTreeMap::new(),
            acme_certificates: BTreeMap::new(),
            unloadable_secrets: BTreeMap::new(),
        }
    }

    /// The same, at `now` (the pass's time), with the ACME answers being published and the
    /// certificates' contents the shell read back.
    pub fn with_acme(
        mut self,
        now: Timestamp,
        answers: BTreeMap<String, String>,
        certificates: BTreeMap<String, Vec<u8>>,
    ) -> Self {
        self.now = now;
        self.acme_answers = answers;
        self.acme_certificates = certificates;
        self
    }

    /// The same, for an operator running as the Swarm service `service` (from `image`): without
    /// `EndpointOverride`, extensions call it by that service's name.
    pub fn running_as(mut self, config: &Config, service: Option<String>, image: Option<String>) -> Self {
        if config.endpoint_override.is_none()
            && let Some(service) = &service
        {
            self.core_endpoint = format!("{service}:{}", config.listen_addr.port);
            self.endpoint_known = true;
        }
        self.core_service = service;
        self.core_image = image;
        self
    }

    /// The same, with the key extensions' tokens derive from.
    pub fn with_extension_key(mut self, key: impl Into<String>) -> Self {
        self.extension_key = key.into();
        self
    }
}

/// A config as a hitless extension writes it into its node's running proxy tasks: the files,
/// and how the task checks and reloads them. Served by the core to the cluster's extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub extension: String,
    /// The proxy service whose tasks take it.
    pub proxy_service: String,
    /// sha256 of the whole rendered config: what tasks report having applied.
    pub hash: String,
    /// Grows with every new config of the cluster and never goes back, across core replicas
    /// and restarts (recorded on the proxy service, [`LABEL_CONFIG_GENERATION`]): an extension
    /// never applies a delivery older than the one its task runs. 0: from a core that predates
    /// generations.
    #[serde(default)]
    pub generation: u64,
    /// Absolute paths in the task, the main file first.
    pub files: Vec<DeliveredFile>,
    /// Directories to empty before writing (a split config's parts directory).
    pub clear_dirs: Vec<String>,
    /// Run in the task after writing; exit status 0: the task's binary accepts the files.
    pub check: Vec<String>,
    /// Sent to the task's main process (the proxy's master) to reload gracefully.
    pub reload_signal: String,
    /// Where the task records the hash it runs.
    pub applied_file: String,
    /// The identity of the core's binary that accepted this very config, checked as the task
    /// reads it ([`crate::proxy::check_reuse`]); "" when the core did not check it so. Set by
    /// the shell after its check, never by the plan.
    #[serde(default)]
    pub checked_with: String,
}

/// One file of a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredFile {
    pub path: String,
    pub content: String,
}

/// What one extension's service cluster needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    pub extension: String,
    pub cluster: String,
    /// `None` while the operator network does not exist yet (the plan then writes only the
    /// network, and this cluster on the next pass).
    pub extension_service: Option<ServiceDef>,
    pub proxy_service: ServiceDef,
    /// The whole rendered config: what is checked, hashed and shown.
    pub proxy_config: ConfigDef,
    /// The config objects the proxy mounts, with their targets: `proxy_config` itself, or, when
    /// it is over Swarm's size limit (nginx), a main file and the parts it includes; HAProxy's
    /// main file, its map files and, over the limit, its parts (`proxy::split`). The main file is
    /// first and keeps `proxy_config`'s name.
    pub config_files: Vec<(ConfigDef, String)>,
    /// Why the config cannot be held in config objects at all (too large to split).
    pub config_error: Option<String>,
    /// What kind of proxy the config is for (which binary checks it).
    pub proxy_kind: ProxyKind,
    pub routes: RouteTable,
    /// `HitlessServiceUpdate`: config-only changes reach the running tasks through the
    /// extension ([`ClusterState::delivery`]) instead of rolling the proxy service.
    pub hitless: bool,
    /// What the core serves the extension (hitless only).
    pub delivery: Option<Delivery>,
    /// The extension's token, as a secret mounted on it (hitless only, with a key).
    pub token_secret: Option<SecretDef>,
    /// ACME: per host wanting a certificate, order, renew or keep, and the warnings about the
    /// cluster's `ssl_acme` labels. `routes` already serves the current certificates.
    pub acme: ClusterAcme,
}

/// The whole desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The operator network, when it has to be created.
    pub network: Option<NetworkDef>,
    /// By extension name.
    pub clusters: BTreeMap<String, ClusterState>,
    /// App services naming a cluster no extension serves.
    pub unserved: Vec<Quarantined>,
    /// The statistics agent (`interlock agent`, one task per node), while the `carbon` plug-in
    /// is enabled and the operator network exists.
    pub agent: Option<ServiceDef>,
    /// `[NodeLabels]`: the labels declared for each node a table names, by node ID, and the
    /// nodes refused their hostname tables (`crate::node_labels`). Nodes not named and without a
    /// record of managed keys are never written.
    pub node_labels: DesiredNodeLabels,
    /// `DriftPolicy`: whether the plan writes back hand edits of managed fields or only reports them.
    pub drift_policy: DriftPolicy,
    /// ACME certificate objects no cluster needs any more (the shell removes them once no
    /// proxy service names them).
    pub acme_retire: Vec<Retire>,
}

/// The services that run interlock's own binary (the extensions and the statistics agent) run
/// with least privilege: a read-only root filesystem (they write nothing of their own: the
/// Docker socket is a bind mount, the token a secret) and no new privileges. Both are fields
/// interlock always manages on them; a proxy (the operator's image, which writes its pid, logs
/// and temporary files) has neither.
pub const HARDENING: [Field; 2] = [Field::ReadOnly, Field::NoNewPrivileges];

/// The statistics agent's service name.
pub const AGENT_SERVICE: &str = "interlock-stats-agent";
/// Its role label.
pub const ROLE_AGENT: &str = "stats-agent";

/// The role of a service the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRole {
    Extension,
    Proxy,
}

/// Which TOML key declares each proxy field an operator may also set by hand. While none of a
/// field's keys is in the TOML, the field is set at creation and then left alone.
const PROXY_FIELD_KEYS: &[(Field, &[&str])] = &[
    (Field::Args, &["ProxyArgs"]),
    (Field::ContainerLabels, &["ProxyContainerLabels"]),
    (Field::Replicas, &["ProxyReplicas"]),
    (Field::Constraints, &["ProxyConstraints"]),
    (Field::PlacementPreferences, &["ProxyPlacementPreferences"]),
    (Field::Ports, &["PublishMode", "PublishedPort", "TargetPort", "PublishedSSLPort", "TargetSSLPort"]),
    // Host-mode ports need stop-first: the order follows a declared PublishMode.
    (Field::UpdateOrder, &["PublishMode"]),
    (Field::StopSignal, &["ProxyStopSignal"]),
    (Field::StopGracePeriod, &["ProxyStopGracePeriod"]),
    (Field::UpdateDelay, &["ProxyUpdateDelay"]),
];

/// The same for the extension service.
const EXTENSION_FIELD_KEYS: &[(Field, &[&str])] = &[
    (Field::Args, &["Args"]),
    (Field::ContainerLabels, &["ContainerLabels"]),
    (Field::Constraints, &["Constraints"]),
    (Field::PlacementPreferences, &["PlacementPreferences"]),
];

impl ServiceRole {
    /// Fields the operator always owns: what routing needs (image, config, secrets, networks),
    /// and how interlock's own binary runs (see [`HARDENING`]).
    fn always_managed(self) -> &'static [Field] {
        match self {
            // The command is the hitless start script or the image's own: either way interlock's.
            ServiceRole::Proxy => &[Field::Image, Field::Command, Field::Networks, Field::Configs, Field::Secrets],
            ServiceRole::Extension => &[Field::Image, Field::Networks, Field::ReadOnly, Field::NoNewPrivileges],
        }
    }

    /// `(field, the TOML keys that declare it)` for fields an operator may tune by hand.
    pub fn declarable(self) -> &'static [(Field, &'static [&'static str])] {
        match self {
            ServiceRole::Proxy => PROXY_FIELD_KEYS,
            ServiceRole::Extension => EXTENSION_FIELD_KEYS,
        }
    }

    /// The fields an extension's TOML makes the operator manage on this service.
    pub fn managed_fields(self, ext: &Extension) -> BTreeSet<Field> {
        let mut fields: BTreeSet<Field> = self.always_managed().iter().copied().collect();
        if ext.hitless_service_update {
            // What a hitless extension needs: its node's socket and its token.
            if self == ServiceRole::Extension {
                fields.extend([Field::Mounts, Field::Secrets]);
            }
        }
        for (field, keys) in self.declarable() {
            if keys.iter().any(|k| ext.declared.contains(k)) {
                fields.insert(*field);
            }
        }
        fields
    }
}

/// Computes the desired state. Pure: same inputs, same output, byte for byte.
pub fn desired_state(config: &Config, observed: &Observed, env: &Environment) -> Desired {
    desired_state_excluding(config, observed, env, &BTreeMap::new())
}

/// [`desired_state`], with the app services in `excluded` (name → reason) quarantined for that
/// reason instead of routed: the services the shell found responsible for a config the real
/// proxy rejects.
pub fn desired_state_excluding(
    config: &Config,
    observed: &Observed,
    env: &Environment,
    excluded: &BTreeMap<String, String>,
) -> Desired {
    // The secrets each cluster's proxy cannot load (recorded, and found this pass): every app
    // service of the cluster naming one is left out, like a culprit.
    let unloadable: BTreeMap<&str, BTreeMap<proxy::secret_blame::SecretUse, String>> = config
        .extensions
        .values()
        .map(|ext| {
            let recorded = observed
                .services
                .iter()
                .find(|s| s.def.name == ext.proxy_service_name && is_owned(&s.def.labels))
                .and_then(|s| s.def.labels.get(LABEL_UNLOADABLE_SECRETS));
            let found = env.unloadable_secrets.get(&ext.name);
            let secrets =
                proxy::secret_blame::unloadable_secrets(recorded.map(String::as_str), found, &observed.secret_ids);
            (ext.name.as_str(), secrets)
        })
        .collect();
    let naming_unloadable: BTreeMap<String, String> = config
        .extensions
        .values()
        .filter(|ext| !unloadable[ext.name.as_str()].is_empty())
        .flat_map(|ext| {
            let secrets = &unloadable[ext.name.as_str()];
            observed
                .services
                .iter()
                .filter(|s| !is_owned(&s.def.labels))
                .filter(|s| crate::labels::service_cluster(&s.def.labels) == ext.service_cluster)
                .filter_map(move |s| {
                    let (label, secret) = proxy::secret_blame::names_unloadable(&s.def.labels, secrets)?;
                    Some((s.def.name.clone(), proxy::secret_blame::quarantine_reason(ext.proxy_kind, label, &secret)))
                })
        })
        .collect();
    let with_unloadable: BTreeMap<String, String>;
    let excluded = if naming_unloadable.is_empty() {
        excluded
    } else {
        let mut all = naming_unloadable;
        // A culprit's own reason first.
        all.extend(excluded.iter().map(|(k, v)| (k.clone(), v.clone())));
        with_unloadable = all;
        &with_unloadable
    };
    let included: Vec<ServiceFacts>;
    let services = if excluded.is_empty() {
        &observed.services
    } else {
        included = observed.services.iter().filter(|s| !excluded.contains_key(&s.def.name)).cloned().collect();
        &included
    };
    let secrets = routes::Secrets {
        names: &observed.secrets,
        labels: &observed.secret_labels,
        labelled_only: config.secret_policy == crate::config::SecretPolicy::Labelled,
    };
    let mut tables =
        routes::route_tables(services, &observed.tasks, &observed.networks, &secrets, |s| is_owned(&s.def.labels));
    for service in observed.services.iter().filter(|s| !is_owned(&s.def.labels)) {
        if let Some(reason) = excluded.get(&service.def.name) {
            let table = tables.entry(crate::labels::service_cluster(&service.def.labels)).or_default();
            table.quarantined.push(Quarantined { service: service.def.name.clone(), reason: reason.clone() });
            table.quarantined.sort();
        }
    }
    let operator_network = observed.networks.iter().find(|n| n.name == env.operator_network);
    let network = operator_network.is_none().then(|| NetworkDef {
        name: env.operator_network.clone(),
        labels: owned_labels(None, "network"),
        attachable: true,
        encrypted: config.operator_network_encrypted,
    });
    let mut clusters = BTreeMap::new();
    let certificates = acme::certificates(observed);
    for ext in config.extensions.values() {
        let mut routes = tables.get(&ext.service_cluster).cloned().unwrap_or_default();
        // A rolling proxy mounts a certificate's secret; a hitless one is delivered its content.
        let hitless = ext.hitless_service_update;
        let usable = |name: &str| !hitless || env.acme_certificates.contains_key(name);
        let decisions = acme::decide(config.acme.as_ref(), &routes, &certificates, env.now, &usable);
        acme::amend(&mut routes, &decisions);
        // Only now does the table know which hosts have a certificate (ACME's included).
        routes.warn_https_without_certificate(ext.target_ssl_port != 0);
        // Run from elsewhere than the core's own task (a person's `plan`/`apply`), the shell does
        // not know what the core is called: keep what the extension was told, rather than undo
        // the running core's choice.
        let told = (!env.endpoint_known)
            .then(|| observed.services.iter().find(|s| s.def.name == ext.service_name && is_owned(&s.def.labels)))
            .flatten()
            .and_then(|s| s.def.env.iter().find_map(|e| e.strip_prefix("INTERLOCK_CORE_ENDPOINT=")));
        // Likewise the core service it names.
        let named = env
            .core_service
            .is_none()
            .then(|| observed.services.iter().find(|s| s.def.name == ext.service_name && is_owned(&s.def.labels)))
            .flatten()
            .and_then(|s| s.def.labels.get(LABEL_CORE_SERVICE));
        let adjusted;
        let env = if told.is_some() || named.is_some() {
            adjusted = Environment {
                core_endpoint: told.map_or_else(|| env.core_endpoint.clone(), str::to_owned),
                core_service: named.cloned().or_else(|| env.core_service.clone()),
                ..env.clone()
            };
            &adjusted
        } else {
            env
        };
        let proxy = observed.services.iter().find(|s| s.def.name == ext.proxy_service_name && is_owned(&s.def.labels));
        let recorded = proxy.and_then(|p| {
            let generation = p.def.labels.get(LABEL_CONFIG_GENERATION)?.parse().ok()?;
            Some((generation, p.def.labels.get(LABEL_CONFIG_HASH)?.as_str()))
        });
        let known = Known { recorded, delivered: observed.delivered.get(&ext.name).map(|(g, h)| (*g, h.as_str())) };
        let unloadable = &unloadable[ext.name.as_str()];
        let cluster =
            cluster_state(ext, routes, decisions, operator_network.map(|n| n.id.as_str()), env, known, unloadable);
        clusters.insert(ext.name.clone(), cluster);
    }
    let acme_retire = acme::retire(&certificates, clusters.values().map(|c| &c.acme), env.now);
    for ext in config.extensions.values() {
        tables.remove(&ext.service_cluster);
    }
    let unserved = tables
        .into_iter()
        .flat_map(|(cluster, table)| {
            let reason = format!("no extension serves service cluster {cluster:?}");
            let mut services: Vec<String> = table.hosts.into_values().flatten().map(|b| b.service).collect();
            services.extend(table.quarantined.into_iter().map(|q| q.service));
            services.sort();
            services.dedup();
            services.into_iter().map(move |service| Quarantined { service, reason: reason.clone() })
        })
        .collect();
    let agent = operator_network.and_then(|n| agent_service(config, env, &n.id));
    let node_labels = node_labels::desired(&config.node_labels, &observed.nodes, &observed.node_names);
    Desired { network, clusters, unserved, agent, node_labels, drift_policy: config.drift_policy, acme_retire }
}

/// The statistics agent: `interlock agent` on every node, with that node's Docker socket (a
/// manager's engine reports only its own containers), sending 0.3's container series to Carbon.
/// It joins the operator network, where a Carbon service can be reached.
fn agent_service(config: &Config, env: &Environment, operator_network: &str) -> Option<ServiceDef> {
    let carbon = config.plugins.carbon.as_ref().filter(|_| config.plugins.enabled.iter().any(|p| p == "carbon"))?;
    // The extensions run interlock's own binary (`interlock extension`), so their image has the
    // agent too; the same on every machine `plan` runs on, unlike the core's own image.
    let image = config.extensions.values().next().map(|e| e.image.clone()).or_else(|| env.core_image.clone())?;
    let mut env_vars = vec![
        format!("STATS_CARBON_ADDRESS={}", carbon.address),
        format!("STATS_PREFIX={}", carbon.prefix),
        // Whole seconds, rounded up.
        format!("STATS_INTERVAL={}", carbon.interval.as_millis().div_ceil(1000).max(1)),
    ];
    env_vars.extend(carbon.image_name_filter.iter().map(|f| format!("STATS_IMAGE_NAME_FILTER={f}")));
    // Which containers are proxies, and how to read their status: a proxy task's container
    // carries only the labels the TOML gives it, and a worker's engine cannot see services.
    let proxies: Vec<serde_json::Value> = config
        .extensions
        .values()
        .map(|ext| {
            // nginx: `stub_status` on its HTTP port; HAProxy: the loopback statistics frontend.
            let port = match ext.proxy_kind {
                ProxyKind::Nginx => ext.target_port,
                ProxyKind::Haproxy => proxy::haproxy::stats_port(ext.target_port, ext.target_ssl_port),
            };
            serde_json::json!({ "service": ext.proxy_service_name, "kind": ext.proxy_kind.to_string(), "port": port })
        })
        .collect();
    if !proxies.is_empty() {
        env_vars.push(format!("INTERLOCK_STATS_PROXIES={}", serde_json::Value::from(proxies)));
    }
    let mut labels = owned_labels(None, ROLE_AGENT);
    labels.insert(LABEL_MANAGED_LABELS.to_owned(), "[]".to_owned());
    let mut def = ServiceDef {
        name: AGENT_SERVICE.to_owned(),
        labels,
        image,
        args: vec!["agent".to_owned()],
        env: env_vars,
        global: true,
        networks: vec![operator_network.to_owned()],
        bind_mounts: vec![BindMount { source: DOCKER_SOCKET.to_owned(), target: DOCKER_SOCKET.to_owned() }],
        update: UpdatePolicy { parallelism: 1, delay: None, rollback_on_failure: true, start_first: false },
        read_only: true,
        no_new_privileges: true,
        ..ServiceDef::default()
    };
    def.managed = [Field::Image, Field::Args, Field::Networks, Field::Mounts].into_iter().chain(HARDENING).collect();
    def.labels.insert(LABEL_MANAGED_FIELDS.to_owned(), Field::join(&def.managed));
    Some(with_spec_hash(def))
}

fn owned_labels(extension: Option<&str>, role: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ]);
    if let Some(ext) = extension {
        labels.insert(LABEL_EXTENSION.to_owned(), ext.to_owned());
    }
    labels
}

/// What is known of a hitless cluster's config generations (see [`config_generation`]).
#[derive(Debug, Clone, Copy, Default)]
struct Known<'a> {
    recorded: Option<(u64, &'a str)>,
    delivered: Option<(u64, &'a str)>,
}

/// What a cluster's renderer gets of ACME: the answers, when some host wants a certificate;
/// for a hitless proxy, each certificate served as a file of the delivery
/// (`<parts dir>/acme/NAME.pem`, emptied with the parts directory by every delivery).
fn proxy_acme(ext: &Extension, decisions: &ClusterAcme, env: &Environment) -> ProxyAcme {
    let answers = if decisions.wanted() { acme::valid_answers(&env.acme_answers) } else { BTreeMap::new() };
    let mut files = BTreeMap::new();
    if ext.hitless_service_update {
        let layout = proxy::hitless_layout(ext.proxy_kind, &ext.proxy_config_path);
        if let Some(parts) = layout.parts_dirs.first() {
            let dir = acme::certificates_dir(parts);
            for name in decisions.serving().into_values() {
                files.insert(name.to_owned(), format!("{dir}/{name}.pem"));
            }
        }
    }
    ProxyAcme { answers, files }
}

fn cluster_state(
    ext: &Extension,
    mut routes: RouteTable,
    decisions: ClusterAcme,
    operator_network: Option<&str>,
    env: &Environment,
    known: Known<'_>,
    unloadable: &BTreeMap<proxy::secret_blame::SecretUse, String>,
) -> ClusterState {
    ext.proxy_kind.quarantine_unsupported(&mut routes);
    let acme_files = proxy_acme(ext, &decisions, env);
    let site = proxy::Site {
        http_port: ext.target_port,
        https_port: ext.target_ssl_port,
        published_https_port: ext.published_ssl_port,
        server_info: &env.server_info,
        acme: &acme_files,
    };
    let text = proxy::render(&ext.config, &site, &routes);
    let content_hash = sha256_hex(text.as_bytes());
    let mut config_labels = owned_labels(Some(&ext.name), "proxy-config");
    config_labels.insert(LABEL_SPEC_HASH.to_owned(), content_hash.clone());
    config_labels.insert(LABEL_PROXY_KIND.to_owned(), ext.proxy_kind.to_string());
    let proxy_config = ConfigDef {
        name: format!("{}-{}", ext.proxy_service_name, &content_hash[..12]),
        labels: config_labels,
        data: text.into_bytes(),
    };
    let (config_files, config_error) = config_files(ext, &proxy_config);

    // A proxy with no app network joins the operator network: a task with no overlay network
    // falls back to the default bridge, which a node may not have (the lab's do not), and then
    // its host-mode ports are not published.
    let mut networks: Vec<String> = match &ext.networks {
        Some(listed) => listed.clone(),
        None => routes.network_ids().into_iter().collect(),
    };
    // Only when it has no other network: the operator network carries the core's and the
    // extensions' API, which a proxy (what the internet talks to) has no business reaching.
    if let Some(id) = operator_network
        && networks.is_empty()
    {
        networks.push(id.to_owned());
    }
    let mut ports = vec![PortDef { published: ext.published_port, target: ext.target_port, mode: ext.publish_mode }];
    if ext.published_ssl_port != 0 {
        ports.push(PortDef { published: ext.published_ssl_port, target: ext.target_ssl_port, mode: ext.publish_mode });
    }
    let mut proxy_labels = declared_labels(&ext.proxy_labels);
    proxy_labels.extend(owned_labels(Some(&ext.name), "proxy"));
    proxy_labels.insert(LABEL_TYPE.to_owned(), TYPE_PROXY.to_owned());
    if let Some(record) = proxy::secret_blame::record(unloadable) {
        proxy_labels.insert(LABEL_UNLOADABLE_SECRETS.to_owned(), record);
    }
    let hitless = ext.hitless_service_update;
    let layout = hitless.then(|| proxy::hitless_layout(ext.proxy_kind, &ext.proxy_config_path));
    let generation = config_generation(known.recorded, known.delivered, &content_hash);
    let (command, proxy_env) = match &layout {
        Some(layout) => {
            proxy_labels.insert(LABEL_CONFIG_HASH.to_owned(), content_hash.clone());
            proxy_labels.insert(LABEL_CONFIG_GENERATION.to_owned(), generation.to_string());
            (layout.command.clone(), vec![layout.hash_env(&content_hash)])
        }
        None => {
            let targets: Vec<&str> = config_files.iter().map(|(_, target)| target.as_str()).collect();
            (proxy::plain_command(ext.proxy_kind, &ext.proxy_config_path, &targets), vec![])
        }
    };
    let mount_target = |target: &String| match &layout {
        Some(layout) => layout.mount_target(target),
        None => target.clone(),
    };
    // A delivered certificate is also mounted where the start command copies it from, so a task
    // started later finds the file its mounted config reads (the plan keeps these mounts as it
    // keeps the mounted config: a renewal is a delivery, not a roll).
    let mut secrets: Vec<SecretMount> = ext
        .proxy_kind
        .secret_mounts(&routes)
        .into_iter()
        .filter(|m| !acme_files.files.contains_key(&m.secret_name))
        .collect();
    secrets.extend(
        acme_files
            .files
            .iter()
            .map(|(name, path)| SecretMount { secret_name: name.clone(), target: mount_target(path) }),
    );
    secrets.sort();
    let proxy_service = with_managed(
        ServiceRole::Proxy,
        ext,
        ServiceDef {
            name: ext.proxy_service_name.clone(),
            labels: proxy_labels,
            image: ext.proxy_image.clone(),
            command,
            args: ext.proxy_args.clone(),
            env: proxy_env,
            container_labels: ext.proxy_container_labels.clone(),
            replicas: ext.proxy_replicas,
            global: false,
            constraints: ext.proxy_constraints.iter().map(ToString::to_string).collect(),
            placement_preferences: ext.proxy_placement_preferences.iter().map(ToString::to_string).collect(),
            networks,
            ports,
            configs: config_files
                .iter()
                .map(|(def, target)| ConfigMount { config_name: def.name.clone(), target: mount_target(target) })
                .collect(),
            secrets,
            stop_signal: Some(ext.proxy_stop_signal.clone()),
            stop_grace_period: Some(ext.proxy_stop_grace_period),
            update: UpdatePolicy {
                parallelism: 1,
                delay: ext.proxy_update_delay,
                rollback_on_failure: true,
                // A host-mode port is bound once per node: the old task must stop before the new
                // one starts there. Ingress-mode proxies can overlap.
                start_first: ext.publish_mode == PublishMode::Ingress,
            },
            bind_mounts: vec![],
            read_only: false,
            no_new_privileges: false,
            managed: BTreeSet::new(),
        },
    );

    let token_secret = (hitless && !env.extension_key.is_empty()).then(|| {
        let token = crate::token::extension_token(&env.extension_key, &ext.name);
        let mut labels = owned_labels(Some(&ext.name), "extension-token");
        labels.insert(LABEL_SPEC_HASH.to_owned(), sha256_hex(token.as_bytes()));
        SecretDef {
            name: format!("{}-token-{}", ext.service_name, &sha256_hex(token.as_bytes())[..12]),
            labels,
            data: token.into_bytes(),
        }
    });
    let extension_service = operator_network.map(|network_id| {
        let mut env_vars = vec![
            format!("INTERLOCK_EXTENSION_NAME={}", ext.name),
            format!("INTERLOCK_SERVICE_CLUSTER={}", ext.service_cluster),
            format!("INTERLOCK_CORE_ENDPOINT={}", env.core_endpoint),
        ];
        let (mut secrets, mut bind_mounts) = (vec![], vec![]);
        if hitless {
            // On every node (global), with that node's engine, so it can reach the proxy tasks
            // that run there: the Swarm API cannot write into a container.
            env_vars.push("INTERLOCK_HITLESS=1".to_owned());
            // What it may touch, from its own spec, never from what the network says: the
            // proxy service whose containers it writes into, the proxy kind (its check
            // command, reload signal and directories) and where the config lives.
            env_vars.push(format!("INTERLOCK_PROXY_SERVICE={}", ext.proxy_service_name));
            env_vars.push(format!("INTERLOCK_PROXY_KIND={}", ext.proxy_kind));
            env_vars.push(format!("INTERLOCK_PROXY_CONFIG_PATH={}", ext.proxy_config_path));
            bind_mounts.push(BindMount { source: DOCKER_SOCKET.to_owned(), target: DOCKER_SOCKET.to_owned() });
            secrets.extend(
                token_secret
                    .iter()
                    .map(|s| SecretMount { secret_name: s.name.clone(), target: TOKEN_SECRET_TARGET.to_owned() }),
            );
        }
        let mut labels = declared_labels(&ext.labels);
        labels.extend(owned_labels(Some(&ext.name), "extension"));
        labels.insert(LABEL_TYPE.to_owned(), TYPE_EXTENSION.to_owned());
        if let Some(core) = &env.core_service {
            labels.insert(LABEL_CORE_SERVICE.to_owned(), core.clone());
        }
        with_managed(
            ServiceRole::Extension,
            ext,
            ServiceDef {
                name: ext.service_name.clone(),
                labels,
                image: ext.image.clone(),
                command: vec![],
                args: ext.args.clone(),
                env: env_vars,
                container_labels: ext.container_labels.clone(),
                replicas: 1,
                global: hitless,
                constraints: ext.constraints.iter().map(ToString::to_string).collect(),
                placement_preferences: ext.placement_preferences.iter().map(ToString::to_string).collect(),
                networks: vec![network_id.to_owned()],
                ports: vec![],
                configs: vec![],
                secrets,
                stop_signal: None,
                stop_grace_period: None,
                // A global service has one task per node: the new one can only follow the old.
                update: UpdatePolicy { parallelism: 1, delay: None, rollback_on_failure: true, start_first: !hitless },
                bind_mounts,
                read_only: true,
                no_new_privileges: true,
                managed: BTreeSet::new(),
            },
        )
    });

    let delivery = layout.map(|layout| {
        let mut files: Vec<DeliveredFile> = config_files
            .iter()
            .map(|(def, target)| DeliveredFile {
                path: target.clone(),
                content: String::from_utf8_lossy(&def.data).into_owned(),
            })
            .collect();
        // The certificates (known: `usable` served only those), in the parts directory.
        files.extend(acme_files.files.iter().filter_map(|(name, path)| {
            let pem = env.acme_certificates.get(name)?;
            Some(DeliveredFile { path: path.clone(), content: String::from_utf8_lossy(pem).into_owned() })
        }));
        (files, layout)
    });
    let delivery = delivery.map(|(files, layout)| Delivery {
        extension: ext.name.clone(),
        proxy_service: ext.proxy_service_name.clone(),
        hash: content_hash.clone(),
        generation,
        clear_dirs: if files.len() > 1 { layout.parts_dirs } else { vec![] },
        files,
        check: layout.check,
        reload_signal: layout.reload_signal.to_owned(),
        applied_file: layout.applied_file.to_owned(),
        checked_with: String::new(),
    });
    ClusterState {
        extension: ext.name.clone(),
        cluster: ext.service_cluster.clone(),
        extension_service,
        proxy_service,
        proxy_config,
        config_files,
        config_error,
        proxy_kind: ext.proxy_kind,
        routes,
        hitless,
        delivery,
        token_secret,
        acme: decisions,
    }
}

/// The config objects holding a rendered config: itself when it fits Swarm's limit, else its
/// kind's split (main file first, under the whole config's name; parts `NAME-pN`).
fn config_files(ext: &Extension, whole: &ConfigDef) -> (Vec<(ConfigDef, String)>, Option<String>) {
    let text = String::from_utf8_lossy(&whole.data);
    match proxy::split(ext.proxy_kind, &text, &ext.proxy_config_path, MAX_CONFIG_SIZE) {
        Ok(files) if files.len() == 1 => (vec![(whole.clone(), ext.proxy_config_path.clone())], None),
        Ok(files) => {
            let defs = files
                .into_iter()
                .enumerate()
                .map(|(n, (target, data))| {
                    let name = if n == 0 { whole.name.clone() } else { format!("{}-p{n}", whole.name) };
                    (ConfigDef { name, labels: whole.labels.clone(), data: data.into_bytes() }, target)
                })
                .collect();
            (defs, None)
        }
        Err(reason) => (
            vec![(whole.clone(), ext.proxy_config_path.clone())],
            Some(format!(
                "the proxy config is {} bytes, over Swarm's limit for a config object ({} bytes), and cannot be split: {reason}",
                whole.data.len(),
                MAX_CONFIG_SIZE
            )),
        ),
    }
}

/// The TOML's `Labels`/`ProxyLabels`, with [`LABEL_MANAGED_LABELS`] listing their keys.
fn declared_labels(declared: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = declared.clone();
    let keys: Vec<&String> = declared.keys().filter(|k| !k.starts_with(OWN_LABEL_PREFIX)).collect();
    labels.insert(LABEL_MANAGED_LABELS.to_owned(), serde_json::to_string(&keys).expect("strings serialize"));
    labels
}

/// The label keys a service's [`LABEL_MANAGED_LABELS`] says the operator wrote.
pub fn managed_label_keys(labels: &BTreeMap<String, String>) -> BTreeSet<String> {
    labels.get(LABEL_MANAGED_LABELS).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

/// Sets the managed fields for the role, records them in [`LABEL_MANAGED_FIELDS`], and adds
/// the spec hash.
fn with_managed(role: ServiceRole, ext: &Extension, mut def: ServiceDef) -> ServiceDef {
    def.managed = role.managed_fields(ext);
    def.labels.insert(LABEL_MANAGED_FIELDS.to_owned(), Field::join(&def.managed));
    with_spec_hash(def)
}

/// Adds [`LABEL_SPEC_HASH`]: the sha256 of the canonical JSON (struct fields in declaration
/// order, maps sorted) of what the operator manages, without the hash label itself.
pub fn with_spec_hash(mut def: ServiceDef) -> ServiceDef {
    def.labels.remove(LABEL_SPEC_HASH);
    let hash = spec_hash(&def);
    def.labels.insert(LABEL_SPEC_HASH.to_owned(), hash);
    def
}

/// The hash [`with_spec_hash`] stores, for a definition without the label: of its name,
/// labels, environment and managed fields only, so creation defaults of fields left to the
/// operator take no part.
pub fn spec_hash(def: &ServiceDef) -> String {
    let mut view = ServiceDef {
        name: def.name.clone(),
        labels: def.labels.clone(),
        env: def.env.clone(),
        managed: def.managed.clone(),
        ..ServiceDef::default()
    };
    for field in &def.managed {
        view.take_field(def, *field);
    }
    let canonical = serde_json::to_vec(&view).expect("a ServiceDef always serializes");
    sha256_hex(&canonical)
}

#[cfg(test)]
mod tests;
