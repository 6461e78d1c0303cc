//! Checking a pass's new proxy configs before any is rolled out, and finding the services whose
//! labels make the proxy binary reject one (its culprits), so that they are quarantined and the
//! rest of the cluster converges without them.
//!
//! The search checks first each service new or changed since the cluster's last accepted config
//! on its own (a small config), then, when none is rejected alone, bisects over the cluster's
//! routed services, oldest first (see [`Judge::find_culprits`]); culprits are remembered until
//! their labels change ([`Culprits`]). A proxy task's own rejection (a hitless extension's
//! report) that quotes a tenant's secret file quarantines the services naming that secret
//! (`reconcilers::proxy::secret_blame`): only the task reads secrets' contents. The search only decides who is quarantined: the config
//! rolled out is always the whole one, checked whole. A rejection no service explains (the
//! operator's own TOML), or a config that could not be checked at all, holds the cluster: its
//! proxy keeps its last good config.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use reconcilers::config::{Config, ProxyKind};
use reconcilers::desired::{self, Environment};
use reconcilers::observed::Observed;
use reconcilers::observed::ServiceFacts;
use reconcilers::plan::{self, Plan};
use reconcilers::proxy::secret_blame;
use reconcilers::routes::{RouteTable, Timestamp};
use tracing::warn;

use crate::core::delivery::Deliveries;
use crate::core::proxycheck::{ProxyChecker, Verdict};
use crate::core::status::{self, SharedStatus};

/// At most this many services are found responsible for one rejected config per search...
const MAX_CULPRITS: usize = 3;
/// ...and at most this many searches run in one pass; what is still rejected then is held.
const MAX_CULPRIT_ROUNDS: usize = 3;

/// A service found responsible for a config the proxy binary rejects.
#[derive(Debug, Clone)]
struct Culprit {
    /// Its routing labels when it was found: a change of them clears it.
    fingerprint: String,
    reason: String,
}

/// What a service's routes depend on in its labels.
fn route_fingerprint(service: &ServiceFacts) -> String {
    let labels: Vec<(&String, &String)> =
        service.def.labels.iter().filter(|(k, _)| k.starts_with(reconcilers::labels::LABEL_PREFIX)).collect();
    format!("{}:{labels:?}", service.id)
}

/// The services in a cluster's last config the check accepted: who is new or changed since
/// (the suspects of the next rejection).
#[derive(Debug, Clone)]
struct AcceptedRoutes {
    /// The extension's TOML section it was rendered under: another one makes every service a
    /// suspect.
    extension_config: String,
    /// The accepted config's content hash: the same config is not recorded again.
    hash: String,
    /// Service name → its [`route_fingerprint`].
    services: BTreeMap<String, String>,
}

/// At most this many suspects are checked each on its own before the bisection.
const MAX_SUSPECTS: usize = 8;

/// The culprits found so far, by service name, and each cluster's last accepted routes. A plan
/// takes `&self` (the `plan` command), hence the locks.
#[derive(Debug, Default)]
pub(super) struct Culprits {
    found: Mutex<BTreeMap<String, Culprit>>,
    /// By extension.
    accepted: Mutex<BTreeMap<String, AcceptedRoutes>>,
}

impl Culprits {
    /// Culprits found earlier whose labels have not changed since: excluded again without a new
    /// search. A changed service is judged afresh.
    fn remembered(&self, observed: &Observed) -> BTreeMap<String, String> {
        let mut culprits = self.found.lock().expect("culprits lock");
        culprits.retain(|name, culprit| {
            observed.services.iter().any(|s| s.def.name == *name && route_fingerprint(s) == culprit.fingerprint)
        });
        culprits.iter().map(|(name, c)| (name.clone(), c.reason.clone())).collect()
    }

    fn remember(&self, observed: &Observed, service: &str, reason: &str) {
        let Some(facts) = observed.services.iter().find(|s| s.def.name == service) else { return };
        self.found
            .lock()
            .expect("culprits lock")
            .insert(service.to_owned(), Culprit { fingerprint: route_fingerprint(facts), reason: reason.to_owned() });
    }

    /// Records the services `routes` holds as those of `extension`'s last accepted config.
    fn accept(&self, extension: &str, extension_config: String, state: &desired::ClusterState, observed: &Observed) {
        let hash = state.proxy_config.labels.get(reconcilers::ownership::LABEL_SPEC_HASH).cloned().unwrap_or_default();
        let mut accepted = self.accepted.lock().expect("accepted lock");
        if accepted.get(extension).is_some_and(|a| a.hash == hash && a.extension_config == extension_config) {
            return;
        }
        let routed = routed_services(&state.routes);
        let services = observed
            .services
            .iter()
            .filter(|s| routed.contains(s.def.name.as_str()))
            .map(|s| (s.def.name.clone(), route_fingerprint(s)))
            .collect();
        accepted.insert(extension.to_owned(), AcceptedRoutes { extension_config, hash, services });
    }

    /// Of `candidates`, those not in `extension`'s last accepted config as they are now (new, or
    /// their labels changed); `None` when nothing was accepted under this TOML section yet.
    fn suspects(&self, extension: &str, extension_config: &str, candidates: &[&ServiceFacts]) -> Option<Vec<String>> {
        let accepted = self.accepted.lock().expect("accepted lock");
        let accepted = accepted.get(extension).filter(|a| a.extension_config == extension_config)?;
        Some(
            candidates
                .iter()
                .filter(|s| accepted.services.get(&s.def.name) != Some(&route_fingerprint(s)))
                .map(|s| s.def.name.clone())
                .collect(),
        )
    }
}

/// The services a route table routes to.
fn routed_services(routes: &RouteTable) -> BTreeSet<&str> {
    routes.hosts.values().flatten().chain(&routes.default_backend).map(|b| b.service.as_str()).collect()
}

/// Why a new proxy config is not rolled out.
enum Refusal {
    /// A proxy binary rejected it (the operator's, or a proxy task's own).
    Rejected(String),
    /// It could not be checked (the check itself failed to run).
    NotChecked(String),
}

/// Holds a cluster whose new config could not be checked: an unchecked config is never rolled
/// out, and no service is blamed for it.
fn hold_unchecked(cluster: &mut plan::ClusterPlan, why: &str) {
    cluster.actions.clear();
    cluster.delivery = None;
    cluster.conflicts.push(format!(
        "the new proxy config could not be checked ({why}): nothing is rolled out until it can be; the proxy keeps its config"
    ));
}

/// What one plan's configs are judged with: the config and environment they are rendered from,
/// the proxy binaries, the extensions' reports, the culprits found so far. Every check is a
/// heartbeat in `status` (a long search is no stuck loop).
pub(super) struct Judge<'a> {
    pub config: &'a Config,
    pub env: &'a Environment,
    pub checker: &'a ProxyChecker,
    pub deliveries: &'a Deliveries,
    pub status: &'a SharedStatus,
    pub culprits: &'a Culprits,
    /// By extension, what the failed tasks of a proxy service that does not start printed.
    pub failing: &'a BTreeMap<String, String>,
}

impl Judge<'_> {
    /// The plan for `observed`, every new proxy config checked by the real proxy binary first.
    /// When one is rejected, the services responsible are found ([`Judge::find_culprits`]) and
    /// quarantined with the binary's reason, and the rest of the cluster converges without
    /// them. Only a rejection no service explains (the operator's own TOML) holds the cluster:
    /// its writes are dropped and its proxy keeps its last good config.
    pub(super) async fn checked_plan(&self, observed: &Observed) -> Plan {
        let found = self.secrets_tasks_could_not_load(observed);
        if found.is_empty() {
            return self.checked_plan_with_env(observed).await;
        }
        let env = Environment { unloadable_secrets: found, ..self.env.clone() };
        Judge { env: &env, ..*self }.checked_plan_with_env(observed).await
    }

    /// [`Judge::checked_plan`], once the secrets tasks could not load are in the environment.
    async fn checked_plan_with_env(&self, observed: &Observed) -> Plan {
        let mut excluded = self.culprits.remembered(observed);
        for _round in 0..MAX_CULPRIT_ROUNDS {
            let desired = desired::desired_state_excluding(self.config, observed, self.env, &excluded);
            let mut plan = plan::plan(&desired, observed);
            let mut found = false;
            for (name, cluster) in &mut plan.clusters {
                let reason = match self.rejection(name, cluster).await {
                    None => {
                        if let Some(state) = desired.clusters.get(name) {
                            self.culprits.accept(name, self.extension_config(name), state, observed);
                        }
                        continue;
                    }
                    Some(Refusal::NotChecked(why)) => {
                        hold_unchecked(cluster, &why);
                        continue;
                    }
                    Some(Refusal::Rejected(reason)) => reason,
                };
                let kind = cluster.proxy_kind;
                let routes = &desired.clusters[name].routes;
                match self.find_culprits(name, kind, routes, observed, &excluded).await {
                    Some(culprits) if !culprits.is_empty() => {
                        for (service, why) in culprits {
                            warn!(extension = %name, service = %service, "{why}");
                            self.culprits.remember(observed, &service, &why);
                            excluded.insert(service, why);
                        }
                        found = true;
                    }
                    _ => {
                        cluster.actions.clear();
                        cluster.delivery = None;
                        cluster.conflicts.push(format!(
                            "the new proxy config is rejected by {kind} ({reason}), and no service's labels explain it (check the TOML); the proxy keeps its last good config"
                        ));
                    }
                }
            }
            if !found {
                self.stamp_core_checks(&mut plan);
                return plan;
            }
        }
        // Culprits found in every round: plan once more, holding whatever is still rejected.
        let desired = desired::desired_state_excluding(self.config, observed, self.env, &excluded);
        let mut plan = plan::plan(&desired, observed);
        for (name, cluster) in &mut plan.clusters {
            match self.rejection(name, cluster).await {
                Some(Refusal::NotChecked(why)) => hold_unchecked(cluster, &why),
                Some(Refusal::Rejected(reason)) => {
                    cluster.actions.clear();
                    cluster.delivery = None;
                    cluster.conflicts.push(format!(
                        "the new proxy config is rejected by {} ({reason}); the proxy keeps its last good config",
                        cluster.proxy_kind
                    ));
                }
                None => {}
            }
        }
        self.stamp_core_checks(&mut plan);
        plan
    }

    /// By extension, the secrets (by name) that a proxy task could not load, as its own
    /// check's rejection (hitless) or the output of tasks that failed to start on a config (an
    /// update Swarm rolled back, a proxy service running no task) quotes their files (`reconcilers::proxy::secret_blame`): the
    /// operator's check, with stand-ins for every secret, accepts such a config and finds no
    /// culprit. Any rejection a task stands by counts, not only one of the config this pass
    /// renders: a secret's content never changes, and a tenant's change arriving meanwhile (a
    /// new config) must not let it back in for another round. The desired state records them on
    /// the proxy service and leaves out every service naming one.
    fn secrets_tasks_could_not_load(&self, observed: &Observed) -> BTreeMap<String, BTreeSet<secret_blame::SecretUse>> {
        let words: BTreeMap<&String, Vec<String>> = self
            .config
            .extensions
            .keys()
            .map(|name| {
                let mut words = self.deliveries.task_rejections(name);
                words.extend(self.failing.get(name).cloned());
                (name, words)
            })
            .filter(|(_, words)| !words.is_empty())
            .collect();
        if words.is_empty() {
            return BTreeMap::new();
        }
        // The routes the words are read against: which secret each quoted file is.
        let desired =
            desired::desired_state_excluding(self.config, observed, self.env, &self.culprits.remembered(observed));
        let mut found: BTreeMap<String, BTreeSet<secret_blame::SecretUse>> = BTreeMap::new();
        for (extension, words) in words {
            let (Some(ext), Some(state)) = (self.config.extensions.get(extension), desired.clusters.get(extension))
            else {
                continue;
            };
            for text in &words {
                for blamed in secret_blame::blame_secrets(ext.proxy_kind, &state.routes, text) {
                    warn!(
                        extension = %extension,
                        service = %blamed.service,
                        secret = %blamed.secret,
                        "the proxy's tasks cannot load a secret this service names in {}: {}",
                        blamed.label,
                        blamed.words
                    );
                    found.entry(extension.clone()).or_default().insert((blamed.label, blamed.secret));
                }
            }
        }
        found
    }

    /// The extension's TOML section, as text: what its accepted routes were checked under.
    fn extension_config(&self, extension: &str) -> String {
        format!("{:?}", self.config.extensions.get(extension))
    }

    /// Says on each delivery which build of the proxy binary accepted it as the task reads it
    /// (`Delivery::checked_with`), so a task of the same build may skip its own check.
    fn stamp_core_checks(&self, plan: &mut Plan) {
        for cluster in plan.clusters.values_mut() {
            let kind = cluster.proxy_kind;
            if let Some(delivery) = cluster.delivery.as_mut() {
                let texts = delivery.files.iter().map(|f| f.content.as_str());
                delivery.checked_with = self.checker.accepted_as_is(kind, &delivery.hash, texts).unwrap_or_default();
            }
        }
    }

    /// Why the config a cluster's plan would create or deliver may not be rolled out: the
    /// binary's reason when it is rejected (by the operator's binary, or by a proxy task's own,
    /// as a hitless extension reported), or why it could not be checked at all.
    async fn rejection(&self, extension: &str, cluster: &plan::ClusterPlan) -> Option<Refusal> {
        let Some(def) = cluster.new_config.as_ref() else {
            // Converged on the served config (recorded on the proxy service as soon as it was
            // served): its tasks' rejections arrive afterwards and still hold the cluster.
            let delivery = cluster.delivery.as_ref()?;
            return self.deliveries.rejected(extension, &delivery.hash).map(Refusal::Rejected);
        };
        let hash = def.labels.get(reconcilers::ownership::LABEL_SPEC_HASH).cloned().unwrap_or_default();
        if let Some(reason) = self.deliveries.rejected(extension, &hash) {
            return Some(Refusal::Rejected(reason));
        }
        let verdict = self.checker.check(cluster.proxy_kind, &hash, &String::from_utf8_lossy(&def.data)).await;
        status::beat(self.status);
        match verdict {
            Verdict::Rejected(reason) => Some(Refusal::Rejected(reason)),
            Verdict::Failed(reason) => Some(Refusal::NotChecked(reason)),
            Verdict::Accepted | Verdict::Unchecked => None,
        }
    }

    /// The cluster's config with `excluded` left out, checked: the binary's reason if rejected.
    async fn rejected_without(
        &self,
        extension: &str,
        kind: ProxyKind,
        observed: &Observed,
        excluded: &BTreeMap<String, String>,
    ) -> Option<String> {
        let desired = desired::desired_state_excluding(self.config, observed, self.env, excluded);
        let config = &desired.clusters.get(extension)?.proxy_config;
        let hash = config.labels.get(reconcilers::ownership::LABEL_SPEC_HASH).cloned().unwrap_or_default();
        let verdict = self.checker.check(kind, &hash, &String::from_utf8_lossy(&config.data)).await;
        status::beat(self.status);
        match verdict {
            Verdict::Rejected(reason) => Some(reason),
            // The search is over configs the binary could judge; the caller held the cluster
            // before searching when it could not.
            Verdict::Accepted | Verdict::Unchecked | Verdict::Failed(_) => None,
        }
    }

    /// The services whose routes make the binary reject the cluster's config, with the reason
    /// to quarantine them for; `None` when the config is rejected even without any service (the
    /// TOML's doing). A bisection over the cluster's routed services, oldest first: the culprit
    /// is the service whose addition first makes the config fail, so of two services that clash
    /// only together the newer one goes. Bounded: `MAX_CULPRITS` services, each in about
    /// log2(services) + 1 checks (verdicts are cached by content).
    async fn find_culprits(
        &self,
        extension: &str,
        kind: ProxyKind,
        routes: &RouteTable,
        observed: &Observed,
        excluded: &BTreeMap<String, String>,
    ) -> Option<Vec<(String, String)>> {
        let routed = routed_services(routes);
        let mut candidates: Vec<&ServiceFacts> =
            observed.services.iter().filter(|s| routed.contains(s.def.name.as_str())).collect();
        candidates.sort_by_key(|s| (Timestamp::parse(&s.created_at), s.id.clone()));
        let mut remaining: Vec<String> = candidates.iter().map(|s| s.def.name.clone()).collect();
        // The exclusions that leave, of `remaining`, only `keep` in the config.
        let keeping = |base: &BTreeMap<String, String>, remaining: &[String], keep: &[String]| {
            let mut out = base.clone();
            out.extend(remaining.iter().filter(|n| !keep.contains(n)).map(|n| (n.clone(), String::new())));
            out
        };
        if remaining.is_empty()
            || self.rejected_without(extension, kind, observed, &keeping(excluded, &remaining, &[])).await.is_some()
        {
            return None;
        }
        // The services new or changed since the last accepted config, each checked alone (the
        // TOML's settings and that service's routes: a small config): one rejected alone is a
        // culprit whatever else the cluster holds. Most rejections are one service's own labels,
        // so this costs a few small checks instead of log2(services) checks of configs up to the
        // cluster's size. Only when none is rejected alone (services that clash only together)
        // does the bisection run.
        let suspects = self.culprits.suspects(extension, &self.extension_config(extension), &candidates);
        if let Some(suspects) = suspects.filter(|s| !s.is_empty() && s.len() <= MAX_SUSPECTS) {
            let mut culprits = Vec::new();
            for suspect in suspects {
                let alone = keeping(excluded, &remaining, std::slice::from_ref(&suspect));
                if let Some(reason) = self.rejected_without(extension, kind, observed, &alone).await {
                    culprits.push((
                        suspect,
                        format!("the proxy config is rejected by {kind} with this service's routes: {reason}"),
                    ));
                    if culprits.len() == MAX_CULPRITS {
                        break;
                    }
                }
            }
            if !culprits.is_empty() {
                return Some(culprits);
            }
        }
        let mut base = excluded.clone();
        let mut culprits = Vec::new();
        let mut full_reason = self.rejected_without(extension, kind, observed, &base).await?;
        while culprits.len() < MAX_CULPRITS && !remaining.is_empty() {
            // The smallest prefix of `remaining` whose config is rejected ends with a culprit.
            let (mut lo, mut hi, mut reason) = (1, remaining.len(), full_reason.clone());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match self
                    .rejected_without(extension, kind, observed, &keeping(&base, &remaining, &remaining[..mid]))
                    .await
                {
                    Some(why) => (hi, reason) = (mid, why),
                    None => lo = mid + 1,
                }
            }
            let culprit = remaining.remove(lo - 1);
            let why = format!("the proxy config is rejected by {kind} with this service's routes: {reason}");
            base.insert(culprit.clone(), why.clone());
            culprits.push((culprit, why));
            match self.rejected_without(extension, kind, observed, &base).await {
                None => break,
                Some(why) => full_reason = why,
            }
        }
        Some(culprits)
    }
}
