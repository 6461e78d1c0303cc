//! The diff: what to write so the swarm matches the desired state. The same function decides
//! what `apply` does and what `plan` prints, so they never disagree.
//!
//! Rules:
//! - An object is compared by the fields the operator manages: the spec-hash label it was written
//!   with, and every field of the definition as read back. Swarm's own defaults are not part of
//!   a [`ServiceDef`], so they never cause an update.
//! - A service field is managed only while the TOML declares it (or routing needs it): an update
//!   writes [`merge`] of the desired and the current definition, which keeps every other field,
//!   every label and environment variable set by hand. `plan` names fields set by hand that the
//!   TOML could declare.
//! - Objects without the ownership label are never updated or deleted; a name clash is reported.
//! - Each cluster's actions depend only on that cluster, so one cluster's failure or slowness
//!   never holds up another's.
//! - Node labels (`[NodeLabels]`, [`crate::node_labels`]) are one [`Action::UpdateNode`] per
//!   node, in [`Plan::nodes`]: written before the clusters, whose placement depends on them. A
//!   hostname refused its tables (two nodes report it, or it changed node) is a line in
//!   [`Plan::node_warnings`].
//! - **Drift**: a managed field edited by hand since interlock wrote it (the object's spec-hash
//!   label is still the desired one, yet the field differs) is named in [`Plan::drift`]. With
//!   `DriftPolicy = "revert"` (the default) the object's update writes it back; with `"report"`
//!   the object is not written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::acme::{ClusterAcme, Decision, Retire};
use crate::config::{DriftPolicy, ProxyKind};
use crate::desired::{ClusterState, Delivery, Desired, ServiceRole, managed_label_keys, with_spec_hash};
use crate::labels;
use crate::node_labels::{self, NodeUpdate};
use crate::observed::{ConfigDef, Field, NetworkDef, Observed, SecretDef, ServiceDef, ServiceFacts};
use crate::ownership::{
    LABEL_CONFIG_GENERATION, LABEL_CONFIG_HASH, LABEL_EXTENSION, LABEL_MANAGED_FIELDS, LABEL_MANAGED_LABELS,
    LABEL_ROLE, LABEL_SPEC_HASH, OWN_ENV_PREFIX, OWN_LABEL_PREFIX, is_owned,
};
use crate::proxy;
use crate::routes::Quarantined;

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateNetwork(NetworkDef),
    CreateConfig(ConfigDef),
    CreateService(ServiceDef),
    UpdateService {
        id: String,
        version: u64,
        def: ServiceDef,
        changes: Vec<String>,
    },
    DeleteService {
        id: String,
        name: String,
    },
    DeleteConfig {
        id: String,
        name: String,
    },
    CreateSecret(SecretDef),
    DeleteSecret {
        name: String,
    },
    /// Replaces a node's labels with `labels` (the whole new map: interlock's keys as declared,
    /// every other label as read), at `version`; role and availability stay as they are.
    UpdateNode {
        id: String,
        version: u64,
        hostname: String,
        labels: BTreeMap<String, String>,
        changes: Vec<String>,
    },
}

/// A node label update, as `[NodeLabels]` decided it.
impl From<NodeUpdate> for Action {
    fn from(update: NodeUpdate) -> Self {
        let NodeUpdate { id, version, hostname, labels, changes } = update;
        Action::UpdateNode { id, version, hostname, labels, changes }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateNetwork(n) => write!(f, "create network {}", n.name),
            Action::CreateConfig(c) => write!(f, "create config {} ({} bytes)", c.name, c.data.len()),
            Action::CreateService(s) => write!(f, "create service {}", s.name),
            Action::UpdateService { def, changes, .. } => {
                write!(f, "update service {} ({})", def.name, changes.join(", "))
            }
            Action::DeleteService { name, .. } => write!(f, "delete service {name}"),
            Action::DeleteConfig { name, .. } => write!(f, "delete config {name}"),
            Action::CreateSecret(s) => write!(f, "create secret {}", s.name),
            Action::DeleteSecret { name } => write!(f, "delete secret {name}"),
            Action::UpdateNode { hostname, changes, .. } => {
                write!(f, "update node {hostname} ({})", changes.join(", "))
            }
        }
    }
}

/// The writes for one extension's cluster, in the order they must happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPlan {
    pub actions: Vec<Action>,
    /// The cluster's proxy kind: which binary checks the config in a `CreateConfig` action.
    pub proxy_kind: ProxyKind,
    /// The proxy config now in use and the one the plan moves to, when they differ.
    pub config_change: Option<(String, String)>,
    /// The whole new proxy config, when the plan creates its config objects: what the proxy
    /// binary must accept before any of them is written.
    pub new_config: Option<ConfigDef>,
    pub quarantined: Vec<Quarantined>,
    /// Services routed without something their labels ask for, and why (`ssl_only` on a host
    /// without a certificate: [`crate::routes::RouteTable::warnings`]).
    pub route_warnings: Vec<Quarantined>,
    /// Things the plan will not do, and why (a name taken by a service the operator does not own).
    pub conflicts: Vec<String>,
    /// Fields of the cluster's services set by hand that the TOML could declare (not writes).
    pub hand_set: Vec<String>,
    /// How the proxy takes the plan's change, when it has one: in place or by new tasks.
    pub proxy_change: Option<ProxyChange>,
    /// Hitless clusters: the config the core serves the extension (the desired one; dropped
    /// by the shell when the proxy binary rejects it, so the last good one stays served).
    pub delivery: Option<Delivery>,
    /// Hosts routed and backends (task addresses) behind them, for plug-ins and metrics.
    pub routes: usize,
    pub backends: usize,
    /// The cluster's services whose managed fields were edited by hand (see [`Plan::drift`]).
    pub drift: Vec<String>,
    /// ACME: per host wanting a certificate, order, renew or keep; warnings about `ssl_acme`.
    pub acme: ClusterAcme,
}

/// How a change reaches a proxy's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChange {
    /// Hitless: only the config changes; the extension writes it into the running tasks and
    /// reloads them. The service gets a label-only update (no task restarts).
    InPlace { from: String, to: String },
    /// Swarm rolls the tasks onto the new spec (these fields changed).
    Roll(Vec<String>),
}

/// Every write a pass would make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes that come before any cluster's (the operator network).
    pub shared: Vec<Action>,
    /// Node label updates (`[NodeLabels]`): before the clusters, whose placement they decide;
    /// no cluster waits for a failed one.
    pub nodes: Vec<Action>,
    /// Nodes whose managed labels were edited by hand (see [`Plan::drift`]).
    pub node_drift: Vec<String>,
    /// Hostnames whose `[NodeLabels]` tables are refused (shared, or taken over from another
    /// node): those nodes get their ID tables only.
    pub node_warnings: Vec<String>,
    /// The statistics agent's write (plug-ins): no cluster waits for it.
    pub agent: Vec<Action>,
    /// Why the agent is not written (a service of that name interlock does not own).
    pub agent_conflicts: Vec<String>,
    /// The agent's managed fields edited by hand.
    pub agent_drift: Vec<String>,
    /// What the plan does about drift: reverts it (its objects' updates are in the plan) or only
    /// reports it (those objects are left out).
    pub drift_policy: DriftPolicy,
    /// By extension name.
    pub clusters: BTreeMap<String, ClusterPlan>,
    /// Owned objects no extension wants any more (a removed extension).
    pub orphans: Vec<Action>,
    pub unserved: Vec<Quarantined>,
    /// ACME certificate objects no cluster needs any more: shown here, removed by the shell's
    /// ACME module once no proxy service names them (not writes of the pass).
    pub acme_retire: Vec<Retire>,
}

impl Plan {
    /// Whether applying the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.shared.is_empty()
            && self.nodes.is_empty()
            && self.agent.is_empty()
            && self.orphans.is_empty()
            && self.clusters.values().all(|c| c.actions.is_empty())
    }

    pub fn write_count(&self) -> usize {
        self.shared.len()
            + self.nodes.len()
            + self.agent.len()
            + self.orphans.len()
            + self.clusters.values().map(|c| c.actions.len()).sum::<usize>()
    }

    /// The hosts whose certificate the shell orders (`Order`) or renews (`Renew`), each once
    /// (the first cluster's decision when several serve it), in host order.
    pub fn acme_orders(&self) -> Vec<(&str, Decision)> {
        let mut orders: BTreeMap<&str, Decision> = BTreeMap::new();
        for host in self.clusters.values().flat_map(|c| &c.acme.hosts) {
            if host.decision != Decision::Keep {
                let entry = orders.entry(host.host.as_str()).or_insert(host.decision);
                *entry = (*entry).min(host.decision);
            }
        }
        orders.into_iter().collect()
    }

    /// Every object whose managed fields were edited by hand since interlock wrote it, one line
    /// each (`service interlock-proxy-us-east: ports edited by hand`, `node lb-00: label region
    /// edited by hand`): nodes, then services by extension, then the statistics agent. Reverted
    /// by this plan, or only reported, as [`Plan::drift_policy`] says.
    pub fn drift(&self) -> Vec<String> {
        let mut lines = self.node_drift.clone();
        lines.extend(self.clusters.values().flat_map(|c| c.drift.iter().cloned()));
        lines.extend(self.agent_drift.iter().cloned());
        lines
    }
}

/// Compares the desired state with what was observed.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let by_name: BTreeMap<&str, &ServiceFacts> = observed.services.iter().map(|s| (s.def.name.as_str(), s)).collect();
    let mut plan = Plan {
        unserved: desired.unserved.clone(),
        drift_policy: desired.drift_policy,
        acme_retire: desired.acme_retire.clone(),
        ..Plan::default()
    };
    let (updates, drift) = node_labels::decide_all(&observed.nodes, &desired.node_labels, desired.drift_policy);
    plan.nodes = updates.into_iter().map(Action::from).collect();
    plan.node_drift = drift;
    plan.node_warnings.clone_from(&desired.node_labels.warnings);
    let policy = desired.drift_policy;
    if let Some(network) = &desired.network {
        // Every service joins the operator network: nothing else can be written before it.
        plan.shared.push(Action::CreateNetwork(network.clone()));
        return plan;
    }
    let mut wanted_services: BTreeSet<&str> = BTreeSet::new();
    let mut wanted_configs: BTreeSet<&str> = BTreeSet::new();
    for (name, cluster) in &desired.clusters {
        let mut cp = ClusterPlan {
            proxy_kind: cluster.proxy_kind,
            quarantined: cluster.routes.quarantined.clone(),
            route_warnings: cluster.routes.warnings.clone(),
            routes: cluster.routes.hosts.len(),
            backends: cluster.routes.hosts.keys().map(|h| cluster.routes.targets(h).len()).sum(),
            acme: cluster.acme.clone(),
            ..ClusterPlan::default()
        };
        if let Some(reason) = &cluster.config_error {
            // Swarm would refuse it: say so once here rather than fail the write every pass.
            cp.conflicts.push(format!("{reason}: the proxy keeps its last config"));
            plan.clusters.insert(name.clone(), cp);
            continue;
        }
        // A config is adopted only when it is the operator's and holds exactly the render: its
        // name is predictable, so anyone could create one in advance.
        let mut missing = Vec::new();
        let mut planted = Vec::new();
        for (file, _) in &cluster.config_files {
            match observed.configs.iter().find(|c| c.name == file.name) {
                None => missing.push(file),
                Some(c) if is_owned(&c.labels) && c.data == file.data => {}
                Some(_) => planted.push(file.name.as_str()),
            }
        }
        if !planted.is_empty() {
            cp.conflicts.push(format!(
                "config {} exists with other content than interlock rendered: it is not used; remove it",
                planted.join(", ")
            ));
            plan.clusters.insert(name.clone(), cp);
            continue;
        }
        wanted_configs.extend(cluster.config_files.iter().map(|(file, _)| file.name.as_str()));
        let proxy = by_name.get(cluster.proxy_service.name.as_str()).copied();
        cp.delivery = cluster.delivery.clone();
        let in_place = if cluster.hitless { in_place_update(&cluster.proxy_service, proxy) } else { None };
        let proxy_update = match in_place {
            Some(update) => {
                let have = proxy.expect("in place means running");
                let from = have.def.labels.get(LABEL_CONFIG_HASH).cloned().unwrap_or_default();
                if let Some(update) = update {
                    cp.proxy_change = Some(ProxyChange::InPlace { from, to: config_hash(cluster) });
                    cp.new_config = Some(cluster.proxy_config.clone());
                    Some(update)
                } else {
                    None
                }
            }
            None => {
                // Drift is judged against what interlock last wrote: for a hitless proxy, the
                // spec with the config its tasks were started from and serve.
                let baseline = proxy
                    .filter(|_| cluster.hitless)
                    .and_then(|have| hitless_baseline(&cluster.proxy_service, have))
                    .unwrap_or_else(|| cluster.proxy_service.clone());
                let held = drift_held(&baseline, proxy, policy, &mut cp.drift);
                if held && cluster.hitless {
                    // Not written, but still served to the extension: checked first all the same.
                    cp.new_config = Some(cluster.proxy_config.clone());
                }
                let update = if held { None } else { service_action(&cluster.proxy_service, proxy, &mut cp.conflicts) };
                if let Some(Action::UpdateService { changes, .. }) = &update {
                    cp.proxy_change = Some(ProxyChange::Roll(changes.clone()));
                }
                if update.is_some() && !missing.is_empty() {
                    // Parts before the main file that includes them.
                    cp.actions.extend(missing.into_iter().rev().map(|file| Action::CreateConfig(file.clone())));
                    cp.new_config = Some(cluster.proxy_config.clone());
                }
                update
            }
        };
        if let Some(have) = proxy {
            cp.hand_set.extend(hand_set(ServiceRole::Proxy, &cluster.proxy_service, &have.def));
        }
        cp.config_change = config_change(cluster, proxy, observed);
        cp.actions.extend(proxy_update);
        wanted_services.insert(&cluster.proxy_service.name);
        if let Some(secret) = &cluster.token_secret {
            match observed.secret_labels.get(&secret.name) {
                _ if !observed.secrets.contains(&secret.name) => cp.actions.push(Action::CreateSecret(secret.clone())),
                Some(labels) if is_owned(labels) => {}
                _ => cp.conflicts.push(format!(
                    "secret {} exists and was not created by interlock: the extension gets no token; remove it",
                    secret.name
                )),
            }
        }
        if let Some(ext) = &cluster.extension_service {
            wanted_services.insert(&ext.name);
            let have = by_name.get(ext.name.as_str()).copied();
            match have {
                // Swarm cannot change a service's mode (HitlessServiceUpdate turned on or off).
                Some(have) if is_owned(&have.def.labels) && have.def.global != ext.global => {
                    cp.actions.push(Action::DeleteService { id: have.id.clone(), name: have.def.name.clone() });
                    cp.actions.push(Action::CreateService(ext.clone()));
                }
                _ => {
                    if !drift_held(ext, have, policy, &mut cp.drift) {
                        cp.actions.extend(service_action(ext, have, &mut cp.conflicts));
                    }
                }
            }
            if let Some(have) = have {
                cp.hand_set.extend(hand_set(ServiceRole::Extension, ext, &have.def));
            }
        }
        // Old proxy configs go once the proxy has settled on the current one: a rollback still
        // needs the previous config while an update runs. A hitless proxy keeps the config it
        // mounts (its restarted tasks start from it) and nothing else.
        let settled = proxy.is_some_and(|p| {
            p.update_state.as_deref() != Some("updating")
                && (cluster.hitless
                    || p.def.configs.first().is_some_and(|m| m.config_name == cluster.proxy_config.name))
        });
        if settled {
            for config in observed.configs.iter().filter(|c| {
                c.labels.get(LABEL_EXTENSION) == Some(name)
                    && c.labels.get(LABEL_ROLE).is_some_and(|r| r == "proxy-config")
                    && !cluster.config_files.iter().any(|(file, _)| file.name == c.name)
                    && !referenced(observed, &c.name)
            }) {
                cp.actions.push(Action::DeleteConfig { id: config.id.clone(), name: config.name.clone() });
            }
        }
        // Tokens of earlier keys, once no service mounts them.
        let wanted_token = cluster.token_secret.as_ref().map(|s| s.name.as_str());
        for (secret, _) in observed.secret_labels.iter().filter(|(secret, labels)| {
            is_owned(labels)
                && labels.get(LABEL_EXTENSION) == Some(name)
                && labels.get(LABEL_ROLE).is_some_and(|r| r == "extension-token")
                && Some(secret.as_str()) != wanted_token
                && !secret_referenced(observed, secret)
        }) {
            cp.actions.push(Action::DeleteSecret { name: secret.clone() });
        }
        plan.clusters.insert(name.clone(), cp);
    }
    // The statistics agent: shared by every cluster.
    if let Some(agent) = &desired.agent {
        wanted_services.insert(&agent.name);
        let have = by_name.get(agent.name.as_str()).copied();
        let mut conflicts = Vec::new();
        if !drift_held(agent, have, policy, &mut plan.agent_drift) {
            plan.agent.extend(service_action(agent, have, &mut conflicts));
        }
        plan.agent_conflicts.extend(conflicts);
    }
    // Owned services and configs of extensions that are gone.
    for service in &observed.services {
        let role = service.def.labels.get(LABEL_ROLE).map(String::as_str);
        let agent_unwanted = role == Some(crate::desired::ROLE_AGENT) && desired.agent.is_none();
        if is_owned(&service.def.labels)
            && !wanted_services.contains(service.def.name.as_str())
            && (agent_unwanted
                || service.def.labels.contains_key(LABEL_EXTENSION)
                    && !desired.clusters.contains_key(&service.def.labels[LABEL_EXTENSION]))
        {
            plan.orphans.push(Action::DeleteService { id: service.id.clone(), name: service.def.name.clone() });
        }
    }
    for config in &observed.configs {
        let extension = config.labels.get(LABEL_EXTENSION);
        let gone = extension.is_some_and(|e| !desired.clusters.contains_key(e));
        let unused_by_survivors = observed
            .services
            .iter()
            .filter(|s| s.def.labels.get(LABEL_EXTENSION).is_some_and(|e| desired.clusters.contains_key(e)))
            .all(|s| s.def.configs.iter().all(|m| m.config_name != config.name));
        if gone && unused_by_survivors && !wanted_configs.contains(config.name.as_str()) {
            plan.orphans.push(Action::DeleteConfig { id: config.id.clone(), name: config.name.clone() });
        }
    }
    for (secret, labels) in &observed.secret_labels {
        let gone = labels.get(LABEL_EXTENSION).is_some_and(|e| !desired.clusters.contains_key(e));
        if is_owned(labels) && gone && !secret_referenced(observed, secret) {
            plan.orphans.push(Action::DeleteSecret { name: secret.clone() });
        }
    }
    plan
}

fn secret_referenced(observed: &Observed, secret_name: &str) -> bool {
    observed.services.iter().any(|s| s.def.secrets.iter().any(|m| m.secret_name == secret_name))
}

/// The hash of the cluster's desired config.
fn config_hash(cluster: &ClusterState) -> String {
    cluster.proxy_config.labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default()
}

/// For a hitless proxy already running the hitless start command: `Some(update)` when the only
/// difference is the config (the update, if any, being the label-only one that records the
/// config its tasks serve), `None` when the change needs new tasks (or there is no service).
///
/// The tasks keep the config object they were started with (a restarted task starts from it
/// and catches up), so the comparison takes the mounted config and its hash from the service.
fn in_place_update(want: &ServiceDef, have: Option<&ServiceFacts>) -> Option<Option<Action>> {
    let have = have?;
    let sticky = sticky_config(want, have)?;
    // The same, also serving the config the service says its tasks serve: nothing else differs?
    let unchanged = hitless_baseline(want, have)?;
    if service_action(&unchanged, Some(have), &mut Vec::new()).is_some() {
        return None;
    }
    Some(service_action(&sticky, Some(have), &mut Vec::new()).map(|action| match action {
        Action::UpdateService { id, version, def, .. } => {
            let changes = vec!["the config its tasks serve (label only: no restart)".to_owned()];
            Action::UpdateService { id, version, def, changes }
        }
        other => other,
    }))
}

/// A hitless proxy's desired spec keeping the config object its tasks mount (and its hash in
/// the environment): what a label-only update writes. `None` unless `have` is an owned proxy
/// already running the hitless start command.
fn sticky_config(want: &ServiceDef, have: &ServiceFacts) -> Option<ServiceDef> {
    if !(is_owned(&have.def.labels) && have.def.command == want.command && !have.def.configs.is_empty()) {
        return None;
    }
    let mounted_hash =
        |def: &ServiceDef| def.env.iter().find(|e| e.starts_with(&format!("{}=", proxy::CONFIG_HASH_ENV))).cloned();
    let mut sticky = want.clone();
    sticky.configs.clone_from(&have.def.configs);
    // So are the ACME certificates mounted beside it (what that config reads): a renewal is
    // delivered, and a restarted task starts from the mounted pair.
    let beside_config =
        |m: &crate::observed::SecretMount| m.target.starts_with(&format!("{}/", proxy::HITLESS_CONFIG_DIR));
    sticky.secrets.retain(|m| !beside_config(m));
    sticky.secrets.extend(have.def.secrets.iter().filter(|m| beside_config(m)).cloned());
    sticky.secrets.sort();
    if let (Some(want_env), Some(have_env)) = (mounted_hash(want), mounted_hash(&have.def)) {
        sticky.env.retain(|e| *e != want_env);
        sticky.env.push(have_env);
    }
    Some(with_spec_hash(sticky))
}

/// [`sticky_config`], also serving the config the service says its tasks serve: the spec
/// interlock last wrote on a hitless proxy when nothing but the routes changed since.
fn hitless_baseline(want: &ServiceDef, have: &ServiceFacts) -> Option<ServiceDef> {
    let mut unchanged = sticky_config(want, have)?;
    for label in [LABEL_CONFIG_HASH, LABEL_CONFIG_GENERATION] {
        match have.def.labels.get(label) {
            Some(served) => unchanged.labels.insert(label.to_owned(), served.clone()),
            None => unchanged.labels.remove(label),
        };
    }
    Some(with_spec_hash(unchanged))
}

/// Managed fields of `have` edited by hand: its spec-hash label is `baseline`'s (nothing the
/// TOML or the routes decide changed since interlock wrote it), yet they differ from it.
pub fn drifted_fields(baseline: &ServiceDef, have: &ServiceFacts) -> Vec<String> {
    let written_as_desired = have.def.labels.contains_key(LABEL_SPEC_HASH)
        && have.def.labels.get(LABEL_SPEC_HASH) == baseline.labels.get(LABEL_SPEC_HASH);
    if !is_owned(&have.def.labels) || !written_as_desired {
        return Vec::new();
    }
    changed_fields(&merge(baseline, &have.def), &have.def)
}

/// Records the service's drift (if any) in `lines`; whether the policy holds its write back.
fn drift_held(
    baseline: &ServiceDef,
    have: Option<&ServiceFacts>,
    policy: DriftPolicy,
    lines: &mut Vec<String>,
) -> bool {
    let Some(have) = have else { return false };
    let fields = drifted_fields(baseline, have);
    if fields.is_empty() {
        return false;
    }
    lines.push(format!("service {}: {} edited by hand", have.def.name, fields.join(", ")));
    policy == DriftPolicy::Report
}

/// The proxy config now in use and the desired one, when they differ (for `plan`'s diff). A
/// hitless proxy's current config is the one its tasks serve, known by content only while it is
/// the mounted one.
fn config_change(
    cluster: &ClusterState,
    proxy: Option<&ServiceFacts>,
    observed: &Observed,
) -> Option<(String, String)> {
    let new = String::from_utf8_lossy(&cluster.proxy_config.data).into_owned();
    let Some(proxy) = proxy else { return Some((String::new(), new)) };
    let mounted = || {
        proxy
            .def
            .configs
            .iter()
            .filter_map(|m| observed.configs.iter().find(|c| c.name == m.config_name))
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect::<String>()
    };
    if cluster.hitless && proxy.def.command == cluster.proxy_service.command {
        let served = proxy.def.labels.get(LABEL_CONFIG_HASH)?;
        if *served == config_hash(cluster) {
            return None;
        }
        let mounted_name = proxy.def.configs.first().map(|m| m.config_name.as_str()).unwrap_or_default();
        let mounted_hash =
            observed.configs.iter().find(|c| c.name == mounted_name).and_then(|c| c.labels.get(LABEL_SPEC_HASH));
        let old = if mounted_hash == Some(served) {
            mounted()
        } else {
            format!("# config {served}: served in place, its text is not kept in the swarm\n")
        };
        return Some((old, new));
    }
    let current = proxy.def.configs.first().map(|m| m.config_name.as_str());
    (current != Some(cluster.proxy_config.name.as_str())).then(|| (mounted(), new))
}

fn referenced(observed: &Observed, config_name: &str) -> bool {
    observed.services.iter().any(|s| s.def.configs.iter().any(|m| m.config_name == config_name))
}

/// Create, update or nothing for one desired service.
fn service_action(want: &ServiceDef, have: Option<&ServiceFacts>, conflicts: &mut Vec<String>) -> Option<Action> {
    let Some(have) = have else { return Some(Action::CreateService(want.clone())) };
    if !is_owned(&have.def.labels) {
        conflicts.push(format!(
            "service {} exists and was not created by interlock: it is left alone; remove it or rename the extension's service",
            want.name
        ));
        return None;
    }
    let rolled_back =
        have.rolled_back_from().is_some_and(|from| want.labels.get(LABEL_SPEC_HASH).map(String::as_str) == Some(from));
    if rolled_back {
        // Reissuing it would fail the same way, and with stop-first host-mode ports each try is
        // an outage: wait until the desired spec changes.
        conflicts.push(format!(
            "Swarm rolled back interlock's update of {} (its new tasks did not start; a certificate that does not match its key?): not retried until the desired spec changes",
            want.name
        ));
        return None;
    }
    let merged = merge(want, &have.def);
    let mut changes = changed_fields(&merged, &have.def);
    let hash_matches = have.def.labels.get(LABEL_SPEC_HASH) == want.labels.get(LABEL_SPEC_HASH);
    if changes.is_empty() {
        if hash_matches {
            return None;
        }
        // Only the bookkeeping labels differ: a key added to or removed from the TOML.
        changes.push("managed fields".to_owned());
    }
    Some(Action::UpdateService { id: have.id.clone(), version: have.version, def: merged, changes })
}

/// What an update of `have` to `want` writes: `want`'s managed fields, `have`'s others; labels
/// and environment merged key by key. The operator's labels (its own prefix, and the TOML keys it
/// recorded writing) follow `want`, so a key dropped from the TOML goes; any other label stays.
/// Its environment variables (`INTERLOCK_…`) follow `want`; any other stays.
pub fn merge(want: &ServiceDef, have: &ServiceDef) -> ServiceDef {
    let mut merged = have.clone();
    merged.managed = want.managed.clone();
    for field in &want.managed {
        merged.take_field(want, *field);
    }
    let written_before = managed_label_keys(&have.labels);
    merged.labels.retain(|key, _| !(key.starts_with(OWN_LABEL_PREFIX) || written_before.contains(key)));
    merged.labels.extend(want.labels.clone());
    let env_name = |e: &String| e.split_once('=').map_or(e.clone(), |(name, _)| name.to_owned());
    let wanted_env: BTreeSet<String> = want.env.iter().map(env_name).collect();
    merged.env = want.env.clone();
    merged.env.extend(
        have.env.iter().filter(|e| !wanted_env.contains(&env_name(e)) && !e.starts_with(OWN_ENV_PREFIX)).cloned(),
    );
    merged
}

/// Fields the TOML leaves to the operator whose value differs from what interlock created the
/// service with: set by hand, and the TOML key that would manage them.
fn hand_set(role: ServiceRole, want: &ServiceDef, have: &ServiceDef) -> Vec<String> {
    role.declarable()
        .iter()
        // The update order only follows PublishMode; declaring that would not manage it.
        .filter(|(field, _)| *field != Field::UpdateOrder)
        .filter(|(field, _)| !want.managed.contains(field) && !want.same_field(have, *field))
        .map(|(field, keys)| {
            let (value, what) = (field_text(have, *field), if keys.len() == 1 { "it" } else { "them" });
            format!("{field} set by hand on {} ({value}); declare {} to manage {what}", want.name, keys.join(", "))
        })
        .collect()
}

/// A field's value as `docker service inspect` users would recognise it.
fn field_text(def: &ServiceDef, field: Field) -> String {
    use Field as F;
    match field {
        F::Args => format!("{:?}", def.args),
        F::ContainerLabels => format!("{:?}", def.container_labels),
        F::Replicas => def.replicas.to_string(),
        F::Constraints => format!("{:?}", def.constraints),
        F::PlacementPreferences => format!("{:?}", def.placement_preferences),
        F::Ports => def
            .ports
            .iter()
            .map(|p| format!("{}:{}/{:?}", p.published, p.target, p.mode).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" "),
        F::StopSignal => def.stop_signal.clone().unwrap_or_default(),
        F::StopGracePeriod => format!("{:?}", def.stop_grace_period.unwrap_or_default()),
        F::UpdateDelay => format!("{:?}", def.update.delay.unwrap_or_default()),
        F::UpdateOrder => (if def.update.start_first { "start-first" } else { "stop-first" }).to_owned(),
        other => format!("{other} differs"),
    }
}

/// Names of the managed fields that differ, for `plan` and logs.
pub fn changed_fields(want: &ServiceDef, have: &ServiceDef) -> Vec<String> {
    let mut changes = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            changes.push(name.to_owned());
        }
    };
    let labels = |d: &ServiceDef| {
        let mut l = d.labels.clone();
        for bookkeeping in [LABEL_SPEC_HASH, LABEL_MANAGED_FIELDS, LABEL_MANAGED_LABELS] {
            l.remove(bookkeeping);
        }
        l
    };
    check("labels", labels(want) != labels(have));
    check("image", want.image != have.image);
    check("args", want.args != have.args);
    check("env", want.env != have.env);
    check("container labels", want.container_labels != have.container_labels);
    check("replicas", want.replicas != have.replicas);
    check("constraints", want.constraints != have.constraints);
    check("placement preferences", want.placement_preferences != have.placement_preferences);
    check("networks", sorted(&want.networks) != sorted(&have.networks));
    check("ports", want.ports != have.ports);
    check("config", want.configs != have.configs);
    check("stop signal", want.stop_signal != have.stop_signal);
    check("stop grace period", want.stop_grace_period != have.stop_grace_period);
    check("update policy", want.update != have.update);
    check("mounts", want.bind_mounts != have.bind_mounts);
    check("command", want.command != have.command);
    check("secrets", want.secrets != have.secrets);
    check("read-only root filesystem", want.read_only != have.read_only);
    // Not `no_new_privileges`: an engine older than the API that added it drops it, and reads
    // it back as false, which must not look like a change on every pass. The spec-hash label
    // covers it (it is in the canonical form while managed): a change of it is written.
    changes
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut s: Vec<&String> = v.iter().collect();
    s.sort();
    s
}

/// The text `interlock plan` prints: per service cluster, the writes, the quarantined services
/// and the proxy config diff.
pub fn render(plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for action in &plan.shared {
        let _ = writeln!(out, "{} {action}", symbol(action));
    }
    if !plan.nodes.is_empty() || !plan.node_drift.is_empty() || !plan.node_warnings.is_empty() {
        let _ = writeln!(out, "node labels:");
        for action in &plan.nodes {
            let _ = writeln!(out, "  {} {action}", symbol(action));
        }
        for line in &plan.node_warnings {
            let _ = writeln!(out, "  warning: {line}");
        }
        for line in &plan.node_drift {
            let _ = writeln!(out, "  drift: {line}{}", drift_outcome(plan.drift_policy));
        }
    }
    for action in &plan.agent {
        let _ = writeln!(out, "{} {action} (statistics agent)", symbol(action));
    }
    for conflict in &plan.agent_conflicts {
        let _ = writeln!(out, "conflict: {conflict}");
    }
    for line in &plan.agent_drift {
        let _ = writeln!(out, "drift: {line}{}", drift_outcome(plan.drift_policy));
    }
    for (extension, cluster) in &plan.clusters {
        let _ = writeln!(out, "extension {extension}:");
        if cluster.actions.is_empty() {
            let _ = writeln!(out, "  no change");
        }
        for action in &cluster.actions {
            let _ = writeln!(out, "  {} {action}", symbol(action));
        }
        for q in &cluster.quarantined {
            let _ = writeln!(out, "  quarantined service {}: {}", q.service, q.reason);
        }
        for warning in &cluster.route_warnings {
            let _ = writeln!(out, "  warning: service {}: {}", warning.service, warning.reason);
        }
        for conflict in &cluster.conflicts {
            let _ = writeln!(out, "  conflict: {conflict}");
        }
        for line in &cluster.drift {
            let _ = writeln!(out, "  drift: {line}{}", drift_outcome(plan.drift_policy));
        }
        for note in &cluster.hand_set {
            let _ = writeln!(out, "  note: {note}");
        }
        for host in cluster.acme.hosts.iter().filter(|h| h.decision != Decision::Keep) {
            let _ = writeln!(
                out,
                "  acme: {} a certificate for {} (service {}): {}",
                host.decision, host.host, host.service, host.reason
            );
        }
        for warning in &cluster.acme.warnings {
            let _ = writeln!(out, "  acme warning: service {}: {}", warning.service, warning.message);
        }
        match &cluster.proxy_change {
            Some(ProxyChange::InPlace { from, to }) => {
                let short = |h: &str| h.chars().take(12).collect::<String>();
                let _ = writeln!(
                    out,
                    "  proxy: reloaded in place, config {} -> {}: the extension writes it into the running tasks (no restart)",
                    short(from),
                    short(to)
                );
            }
            Some(ProxyChange::Roll(changes)) if cluster.delivery.is_some() => {
                let _ = writeln!(out, "  proxy: new tasks (rolling update), because of: {}", changes.join(", "));
            }
            _ => {}
        }
        if let Some((old, new)) = &cluster.config_change
            && !cluster.actions.is_empty()
        {
            let (old, new) = (redacted(old), redacted(new));
            let diff = similar::TextDiff::from_lines(old.as_str(), new.as_str());
            let unified = diff
                .unified_diff()
                .context_radius(2)
                .header("proxy config (current)", "proxy config (desired)")
                .to_string();
            for line in unified.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for action in &plan.orphans {
        let _ = writeln!(out, "{} {action} (its extension is gone)", symbol(action));
    }
    for q in &plan.unserved {
        let _ = writeln!(out, "not routed: service {}: {}", q.service, q.reason);
    }
    for retire in &plan.acme_retire {
        let _ = writeln!(
            out,
            "acme: retire certificate {} ({}): {} (removed once no proxy names it)",
            retire.name, retire.host, retire.reason
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if plan.is_empty() { "nothing to do".to_owned() } else { format!("{} write(s)", plan.write_count()) }
    );
    out
}

/// What `plan` says a drift line leads to.
pub fn drift_outcome(policy: DriftPolicy) -> &'static str {
    match policy {
        DriftPolicy::Revert => "; reverted by this plan",
        DriftPolicy::Report => "; not reverted (DriftPolicy = \"report\")",
    }
}

/// A proxy config as `plan` shows it: credentials (HAProxy's `stats auth USER:PASSWORD`) hidden.
fn redacted(config: &str) -> String {
    config
        .lines()
        .map(|line| match line.trim_start().strip_prefix("stats auth ") {
            Some(_) => format!("{}stats auth (hidden)\n", &line[..line.len() - line.trim_start().len()]),
            None => format!("{line}\n"),
        })
        .collect()
}

fn symbol(action: &Action) -> &'static str {
    match action {
        Action::CreateNetwork(_) | Action::CreateConfig(_) | Action::CreateService(_) | Action::CreateSecret(_) => "+",
        Action::UpdateService { .. } | Action::UpdateNode { .. } => "~",
        Action::DeleteService { .. } | Action::DeleteConfig { .. } | Action::DeleteSecret { .. } => "-",
    }
}

/// Owned services that have not settled: a rollout still running, or fewer running tasks than
/// replicas. Empty when every service the operator wrote is serving its current spec.
pub fn unsettled(observed: &Observed) -> Vec<String> {
    observed
        .services
        .iter()
        .filter(|s| is_owned(&s.def.labels))
        .filter_map(|s| {
            let running = observed.tasks.iter().filter(|t| t.running && t.service_id == s.id).count() as u64;
            let updating = matches!(s.update_state.as_deref(), Some("updating" | "rollback_started"));
            // A global service has a task per eligible node, not a count: settled once any runs.
            let short = if s.def.global { running == 0 } else { running != s.def.replicas };
            (updating || short).then(|| {
                format!(
                    "{}: {running}/{} task(s) running{}",
                    s.def.name,
                    s.def.replicas,
                    s.update_state.as_deref().map(|u| format!(", update {u}")).unwrap_or_default()
                )
            })
        })
        .collect()
}

/// The IDs of app services (not the operator's) with fewer running tasks than replicas. Swarm
/// sends no task events, so while any is new the loop polls fast to route new tasks as soon as
/// they run.
pub fn apps_settling(observed: &Observed) -> Vec<String> {
    let mut running: BTreeMap<&str, u64> = BTreeMap::new();
    for t in observed.tasks.iter().filter(|t| t.running) {
        *running.entry(t.service_id.as_str()).or_default() += 1;
    }
    observed
        .services
        .iter()
        .filter(|s| !is_owned(&s.def.labels) && labels::is_app_service(&s.def.labels))
        .filter(|s| {
            let running = running.get(s.id.as_str()).copied().unwrap_or(0);
            if s.def.global { running == 0 } else { running != s.def.replicas }
        })
        .map(|s| s.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_hides_credentials_in_the_config_diff() {
        let mut plan = Plan::default();
        plan.clusters.insert(
            "hap".into(),
            ClusterPlan {
                actions: vec![Action::DeleteConfig { id: "x".into(), name: "x".into() }],
                config_change: Some((
                    "global\n    stats auth admin:old-secret\n    maxconn 1\n".into(),
                    "global\n    stats auth admin:new-secret\n    maxconn 2\n".into(),
                )),
                ..ClusterPlan::default()
            },
        );
        let text = render(&plan);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("stats auth (hidden)"), "{text}");
    }

    #[test]
    fn plan_prints_refused_hostnames_under_node_labels() {
        let plan = Plan { node_warnings: vec!["hostname lb-00 is reported by nodes a, b".into()], ..Plan::default() };
        assert!(plan.is_empty(), "a warning is no write");
        let text = render(&plan);
        assert!(text.starts_with("node labels:\n  warning: hostname lb-00 is reported by nodes a, b\n"), "{text}");
    }
}
