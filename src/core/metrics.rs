//! The operator's Prometheus metrics: one [`Metrics`] per process, held in
//! [`Context`](crate::core::context::Context), updated by the loop after each pass
//! ([`Metrics::record_pass`]) and by the event watcher, and served as `/metrics` on `ListenAddr`
//! by [`crate::core::server`] (Prometheus text format 0.0.4, or OpenMetrics when the scraper
//! asks for it).
//!
//! Every family is prefixed `interlock_`:
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `passes_total` | counter | `result` (`ok`, `error`) | passes run; `error`: the swarm could not be read |
//! | `pass_duration_seconds` | histogram | | observe, plan, check and the writes the pass waited for |
//! | `writes_total` | counter | `operation` (`create`, `update`, `delete`), `kind` (`service`, `config`, `secret`, `network`, `node`) | writes done (see [`done_writes`]) |
//! | `drift_corrections_total` | counter | | hand edits of managed fields a pass wrote back (`DriftPolicy = "revert"`) |
//! | `drifted_objects` | gauge | | objects left as edited by hand (`DriftPolicy = "report"`) at the last pass |
//! | `quarantined_services` | gauge | `extension` | app services left out of the extension's routes |
//! | `cluster_held` | gauge | `extension` | 1 while the plan holds writes of the cluster back (a rejected config, a name clash) |
//! | `event_stream_reconnects_total` | counter | | times the swarm event stream was subscribed again |
//! | `cluster_last_success_timestamp_seconds` | gauge | `extension` | unix time of the last pass that left the cluster without a write failure |
//! | `label_to_config_seconds` | histogram | | from a swarm event to the end of the pass that changed a proxy config because of it |
//! | `proxy_task_config_age_seconds` | gauge | `extension`, `task`, `node` | hitless: how long each proxy task has run the config it reported |
//!
//! The two approximations are documented where they are made: [`done_writes`] (writes by kind)
//! and [`PendingEvent`] (label-to-config latency).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use reconcilers::config::DriftPolicy;
use reconcilers::plan::Action;
use tokio::time::Instant;

use crate::core::delivery::Deliveries;
use crate::core::pass_report::PassReport;

/// `Content-Type` of the Prometheus text format (what `/metrics` answers by default).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text (answered when the scraper's `Accept` asks for it).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// The kind of Swarm object a write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Service,
    Config,
    Secret,
    Network,
    Node,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Service => "service",
            ObjectKind::Config => "config",
            ObjectKind::Secret => "secret",
            ObjectKind::Network => "network",
            ObjectKind::Node => "node",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for ObjectKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Whether a pass could read the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassResult {
    Ok,
    Error,
}

impl EncodeLabelValue for PassResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        let text = match self {
            PassResult::Ok => "ok",
            PassResult::Error => "error",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PassLabels {
    pub result: PassResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WriteLabels {
    pub operation: Operation,
    pub kind: ObjectKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExtensionLabels {
    pub extension: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct HostLabels {
    pub host: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct TaskLabels {
    pub extension: String,
    pub task: String,
    pub node: String,
}

/// The operator's metrics (see the module documentation), and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub passes: Family<PassLabels, Counter>,
    pub pass_duration: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    pub drift_corrections: Counter,
    pub drifted: Gauge,
    pub quarantined: Family<ExtensionLabels, Gauge>,
    pub held: Family<ExtensionLabels, Gauge>,
    pub event_stream_reconnects: Counter,
    pub last_success: Family<ExtensionLabels, Gauge>,
    pub label_to_config: Histogram,
    pub config_age: Family<TaskLabels, Gauge>,
    pub acme_expiry: Family<HostLabels, Gauge>,
    pub acme_orders: Family<ResultLabels, Counter>,
    /// Hosts with an ACME expiry series, so that a host no longer wanted loses it.
    acme_hosts: Mutex<BTreeSet<String>>,
    /// Extensions with per-extension series, so that a removed extension's series go.
    extensions: Mutex<BTreeSet<String>>,
    /// Task series set at the last scrape, so that a gone task's series go.
    tasks: Mutex<BTreeSet<TaskLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered with its help text.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("interlock");
        let passes = Family::<PassLabels, Counter>::default();
        registry.register(
            "passes",
            "Reconcile passes run; result=error when the swarm could not be read",
            passes.clone(),
        );
        // 5 ms to ~40 s: a pass is a few list calls plus writes it waits up to 2 s for.
        let pass_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register_with_unit(
            "pass_duration",
            "How long a reconcile pass took (observe, plan, config check, the writes it waited for)",
            Unit::Seconds,
            pass_duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Swarm writes done, by operation and object kind (a cluster's writes count when its write task did not fail)",
            writes.clone(),
        );
        let drift_corrections = Counter::default();
        registry.register(
            "drift_corrections",
            "Hand edits of fields interlock manages that a pass wrote back (DriftPolicy revert)",
            drift_corrections.clone(),
        );
        let drifted = Gauge::default();
        registry.register(
            "drifted_objects",
            "Objects whose managed fields were edited by hand and are left so (DriftPolicy report), at the last pass",
            drifted.clone(),
        );
        let quarantined = Family::<ExtensionLabels, Gauge>::default();
        registry.register(
            "quarantined_services",
            "App services left out of the extension's routes because of their labels",
            quarantined.clone(),
        );
        let held = Family::<ExtensionLabels, Gauge>::default();
        registry.register(
            "cluster_held",
            "1 while the plan holds the extension's writes back (a rejected config, a name clash); sum() counts held clusters",
            held.clone(),
        );
        let event_stream_reconnects = Counter::default();
        registry.register(
            "event_stream_reconnects",
            "Times the swarm event stream ended and was subscribed again",
            event_stream_reconnects.clone(),
        );
        let last_success = Family::<ExtensionLabels, Gauge>::default();
        registry.register_with_unit(
            "cluster_last_success_timestamp",
            "Unix time of the last pass that left the extension's cluster without a write failure",
            Unit::Seconds,
            last_success.clone(),
        );
        // 50 ms to ~7 min: event to new config, including app tasks starting.
        let label_to_config = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register_with_unit(
            "label_to_config",
            "From a swarm event to the end of the pass that changed a proxy config after it",
            Unit::Seconds,
            label_to_config.clone(),
        );
        let config_age = Family::<TaskLabels, Gauge>::default();
        registry.register_with_unit(
            "proxy_task_config_age",
            "Hitless updates: how long each proxy task has run the config it last reported",
            Unit::Seconds,
            config_age.clone(),
        );
        let acme_expiry = Family::<HostLabels, Gauge>::default();
        registry.register_with_unit(
            "acme_certificate_expiry_timestamp",
            "ACME: the notAfter (Unix time) of the certificate each host is served with",
            Unit::Seconds,
            acme_expiry.clone(),
        );
        let acme_orders = Family::<ResultLabels, Counter>::default();
        registry.register(
            "acme_orders",
            "ACME orders finished by this replica, by result (issued, failed)",
            acme_orders.clone(),
        );
        Self {
            registry,
            acme_expiry,
            acme_orders,
            acme_hosts: Mutex::default(),
            passes,
            pass_duration,
            writes,
            drift_corrections,
            drifted,
            quarantined,
            held,
            event_stream_reconnects,
            last_success,
            label_to_config,
            config_age,
            extensions: Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// The ACME orders finished so far, by result (`issued`, `failed`): the counters catch up.
    pub fn record_acme_orders(&self, totals: &BTreeMap<String, u64>) {
        for (result, total) in totals {
            let counter = self.acme_orders.get_or_create(&ResultLabels { result: result.clone() });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The expiry of each host's certificate (Unix seconds); hosts not listed lose their series.
    pub fn record_acme_expiry(&self, expiry: &BTreeMap<String, u64>) {
        let mut hosts = self.acme_hosts.lock().expect("acme hosts lock");
        for gone in hosts.iter().filter(|h| !expiry.contains_key(*h)) {
            self.acme_expiry.remove(&HostLabels { host: gone.clone() });
        }
        for (host, not_after) in expiry {
            self.acme_expiry.get_or_create(&HostLabels { host: host.clone() }).set(*not_after as i64);
        }
        *hosts = expiry.keys().cloned().collect();
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The metrics in OpenMetrics text.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Records a pass that read the swarm: its duration, writes by kind, drift, and per
    /// extension its quarantined services, whether it is held and (without a write failure)
    /// `now_unix` as its last success. Extensions the plan no longer has lose their series.
    pub fn record_pass(&self, report: &PassReport, took: Duration, now_unix: u64) {
        self.passes.get_or_create(&PassLabels { result: PassResult::Ok }).inc();
        self.pass_duration.observe(took.as_secs_f64());
        for action in done_writes(report) {
            let (operation, kind) = write_kind(action);
            self.writes.get_or_create(&WriteLabels { operation, kind }).inc();
        }
        let drift = report.plan.drift().len();
        match report.plan.drift_policy {
            DriftPolicy::Revert => {
                self.drift_corrections.inc_by(drift as u64);
                self.drifted.set(0);
            }
            DriftPolicy::Report => {
                self.drifted.set(i64::try_from(drift).unwrap_or(i64::MAX));
            }
        }
        let mut known = self.extensions.lock().expect("metrics lock");
        for (name, cluster) in &report.plan.clusters {
            let labels = ExtensionLabels { extension: name.clone() };
            self.quarantined.get_or_create(&labels).set(cluster.quarantined.len() as i64);
            self.held.get_or_create(&labels).set(i64::from(!cluster.conflicts.is_empty()));
            if cluster_succeeded(report, name) {
                self.last_success.get_or_create(&labels).set(i64::try_from(now_unix).unwrap_or(i64::MAX));
            }
        }
        for gone in known.iter().filter(|name| !report.plan.clusters.contains_key(*name)) {
            let labels = ExtensionLabels { extension: gone.clone() };
            self.quarantined.remove(&labels);
            self.held.remove(&labels);
            self.last_success.remove(&labels);
        }
        *known = report.plan.clusters.keys().cloned().collect();
    }

    /// Records a pass that could not read the swarm.
    pub fn record_failed_pass(&self, took: Duration) {
        self.passes.get_or_create(&PassLabels { result: PassResult::Error }).inc();
        self.pass_duration.observe(took.as_secs_f64());
    }

    /// Records a resubscription of the swarm event stream.
    pub fn record_reconnect(&self) {
        self.event_stream_reconnects.inc();
    }

    /// Sets each hitless proxy task's config age from its extension's last report, for the
    /// `extensions` given (those of the last pass); tasks no longer reported lose their series.
    pub fn refresh_task_ages<'a>(
        &self,
        deliveries: &Deliveries,
        extensions: impl IntoIterator<Item = &'a str>,
        now_unix: u64,
    ) {
        let mut seen = BTreeSet::new();
        for extension in extensions {
            for report in deliveries.tasks(extension).into_values() {
                let labels = TaskLabels {
                    extension: extension.to_owned(),
                    task: report.task.clone(),
                    node: report.node.clone(),
                };
                let age = now_unix.saturating_sub(report.applied_at);
                self.config_age.get_or_create(&labels).set(i64::try_from(age).unwrap_or(i64::MAX));
                seen.insert(labels);
            }
        }
        let mut before = self.tasks.lock().expect("metrics lock");
        for gone in before.difference(&seen) {
            self.config_age.remove(gone);
        }
        *before = seen;
    }
}

/// The object kind and operation of a write.
pub fn write_kind(action: &Action) -> (Operation, ObjectKind) {
    match action {
        Action::CreateNetwork(_) => (Operation::Create, ObjectKind::Network),
        Action::CreateConfig(_) => (Operation::Create, ObjectKind::Config),
        Action::CreateService(_) => (Operation::Create, ObjectKind::Service),
        Action::UpdateService { .. } => (Operation::Update, ObjectKind::Service),
        Action::DeleteService { .. } => (Operation::Delete, ObjectKind::Service),
        Action::DeleteConfig { .. } => (Operation::Delete, ObjectKind::Config),
        Action::CreateSecret(_) => (Operation::Create, ObjectKind::Secret),
        Action::DeleteSecret { .. } => (Operation::Delete, ObjectKind::Secret),
        Action::UpdateNode { .. } => (Operation::Update, ObjectKind::Node),
    }
}

/// The writes a pass made, by kind, as far as its report tells.
///
/// An approximation: the report counts writes done (`PassReport::writes`) but not which. This
/// takes the plan's actions of every part of the pass that did not fail: the shared writes (a
/// failure there fails the pass), each node label update whose failure the report does not
/// name (`node HOSTNAME`), each cluster that was started and has no failure in the
/// report (not busy with an earlier pass's writes, not backing off), the statistics agent
/// unless it failed, and each orphan delete that did not fail. So a failed cluster's writes
/// made before its failure are not counted, and a cluster whose writes outlast the pass's
/// 2 s wait is counted when they start (if they then fail, they were counted anyway). On a
/// converged or healthy swarm the sum equals `PassReport::writes`.
pub fn done_writes(report: &PassReport) -> impl Iterator<Item = &Action> {
    let plan = &report.plan;
    let clusters = plan
        .clusters
        .iter()
        .filter(|(name, _)| cluster_started(report, name) && !report.failures.contains_key(*name))
        .flat_map(|(_, cluster)| &cluster.actions);
    let nodes = plan.nodes.iter().filter(|action| match action {
        Action::UpdateNode { hostname, .. } => !report.failures.contains_key(&format!("node {hostname}")),
        _ => true,
    });
    let agent_failed = report.failures.contains_key("statistics agent");
    let agent = plan.agent.iter().filter(move |_| !agent_failed);
    let orphans = plan.orphans.iter().filter(|action| !report.failures.contains_key(&format!("orphan: {action}")));
    plan.shared.iter().chain(nodes).chain(clusters).chain(agent).chain(orphans)
}

/// Whether the pass started the cluster's writes (it had some, and was neither busy nor
/// backing off).
fn cluster_started(report: &PassReport, name: &str) -> bool {
    !report.busy.iter().any(|b| b == name) && !report.backing_off.iter().any(|b| b == name)
}

/// Whether the pass left the cluster without a write failure: nothing to write, or writes
/// started and not failed (yet). A cluster backing off after a failure is not a success.
fn cluster_succeeded(report: &PassReport, name: &str) -> bool {
    !report.failures.contains_key(name) && !report.backing_off.iter().any(|b| b == name)
}

/// Whether the pass changed a proxy config: a cluster whose config changes had its writes
/// started and not failed.
pub fn config_changed(report: &PassReport) -> bool {
    report.plan.clusters.iter().any(|(name, cluster)| {
        cluster.config_change.is_some()
            && !cluster.actions.is_empty()
            && cluster_started(report, name)
            && !report.failures.contains_key(name)
    })
}

/// The label-to-config latency clock: the earliest swarm event not yet followed by a config
/// change.
///
/// An approximation of "from a label change to the config that serves it": the loop does not
/// know which event caused which change, so it times from the earliest event since the last
/// change to the end of the first pass that changes a proxy config. The event is dropped when a
/// pass changes nothing and no app task is starting (the event needed no new config, e.g. the
/// operator's own writes); while app tasks are starting it is kept, since the route appears
/// when they run.
#[derive(Debug, Default, Clone, Copy)]
pub struct PendingEvent(Option<Instant>);

impl PendingEvent {
    /// A swarm event received at `at`.
    pub fn event(&mut self, at: Instant) {
        self.0 = Some(self.0.map_or(at, |earlier| earlier.min(at)));
    }

    /// After a pass that read the swarm: the latency to observe, if this pass ends it.
    pub fn pass_done(&mut self, report: &PassReport, now: Instant) -> Option<Duration> {
        let since = self.0?;
        if config_changed(report) {
            self.0 = None;
            return Some(now.saturating_duration_since(since));
        }
        if report.apps_settling.is_empty() {
            self.0 = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::observed::{ConfigDef, NetworkDef, SecretDef, ServiceDef};
    use reconcilers::plan::{ClusterPlan, Plan};
    use reconcilers::routes::Quarantined;

    fn network() -> NetworkDef {
        NetworkDef { name: "interlock".into(), labels: Default::default(), attachable: true, encrypted: false }
    }

    fn config() -> ConfigDef {
        ConfigDef { name: "proxy-east-1".into(), labels: Default::default(), data: vec![] }
    }

    fn service(name: &str) -> ServiceDef {
        ServiceDef { name: name.into(), ..ServiceDef::default() }
    }

    fn update(name: &str) -> Action {
        Action::UpdateService { id: "id".into(), version: 1, def: service(name), changes: vec![] }
    }

    fn report() -> PassReport {
        let mut plan = Plan { shared: vec![Action::CreateNetwork(network())], ..Plan::default() };
        plan.clusters.insert(
            "east".into(),
            ClusterPlan {
                actions: vec![Action::CreateConfig(config()), update("proxy-east")],
                config_change: Some((String::new(), "new".into())),
                quarantined: vec![Quarantined { service: "bad".into(), reason: "port".into() }],
                ..ClusterPlan::default()
            },
        );
        plan.clusters.insert(
            "west".into(),
            ClusterPlan { actions: vec![Action::CreateService(service("proxy-west"))], ..ClusterPlan::default() },
        );
        plan.clusters
            .insert("north".into(), ClusterPlan { conflicts: vec!["rejected".into()], ..ClusterPlan::default() });
        plan.orphans = vec![
            Action::DeleteService { id: "1".into(), name: "old".into() },
            Action::DeleteConfig { id: "2".into(), name: "old-config".into() },
        ];
        PassReport { plan, writes: 6, ..PassReport::default() }
    }

    #[test]
    fn every_action_has_its_operation_and_kind() {
        let cases = [
            (Action::CreateNetwork(network()), "create network"),
            (Action::CreateConfig(config()), "create config"),
            (Action::CreateService(service("s")), "create service"),
            (update("s"), "update service"),
            (Action::DeleteService { id: "i".into(), name: "s".into() }, "delete service"),
            (Action::DeleteConfig { id: "i".into(), name: "c".into() }, "delete config"),
            (
                Action::CreateSecret(SecretDef { name: "t".into(), labels: Default::default(), data: vec![] }),
                "create secret",
            ),
            (Action::DeleteSecret { name: "s".into() }, "delete secret"),
        ];
        for (action, want) in cases {
            let (operation, kind) = write_kind(&action);
            assert_eq!(format!("{} {}", operation.as_str(), kind.as_str()), want);
            // The plan's own wording agrees.
            assert!(action.to_string().starts_with(want), "{action}");
        }
    }

    #[test]
    fn done_writes_leave_out_what_failed_or_did_not_start() {
        let all = report();
        assert_eq!(done_writes(&all).count(), all.writes, "a healthy pass: every planned write");
        let mut failed = report();
        failed.failures.insert("east".into(), "boom".into());
        failed.failures.insert("orphan: delete service old".into(), "boom".into());
        failed.backing_off.push("west".into());
        let done: Vec<String> = done_writes(&failed).map(ToString::to_string).collect();
        assert_eq!(done, ["create network interlock", "delete config old-config"]);
        let mut busy = report();
        busy.busy.push("east".into());
        assert_eq!(done_writes(&busy).count(), 4);
        assert!(!config_changed(&busy), "east's new config is still being written");
        assert!(config_changed(&report()));
    }

    #[test]
    fn a_pass_sets_the_gauges_and_a_removed_extension_loses_its_series() {
        let metrics = Metrics::new();
        let mut first = report();
        first.failures.insert("west".into(), "boom".into());
        metrics.record_pass(&first, Duration::from_millis(30), 1_000);
        let east = ExtensionLabels { extension: "east".into() };
        let west = ExtensionLabels { extension: "west".into() };
        let north = ExtensionLabels { extension: "north".into() };
        assert_eq!(metrics.quarantined.get_or_create(&east).get(), 1);
        assert_eq!(metrics.held.get_or_create(&north).get(), 1);
        assert_eq!(metrics.held.get_or_create(&east).get(), 0);
        assert_eq!(metrics.last_success.get_or_create(&east).get(), 1_000);
        assert!(metrics.last_success.get(&west).is_none(), "west failed");
        let writes = |operation, kind| metrics.writes.get_or_create(&WriteLabels { operation, kind }).get();
        assert_eq!(writes(Operation::Update, ObjectKind::Service), 1);
        assert_eq!(writes(Operation::Create, ObjectKind::Service), 0, "west's create failed");
        assert_eq!(writes(Operation::Delete, ObjectKind::Service), 1);

        let mut second = report();
        second.plan.clusters.remove("north");
        metrics.record_pass(&second, Duration::from_millis(30), 2_000);
        assert!(metrics.held.get(&north).is_none() && metrics.quarantined.get(&north).is_none());
        assert_eq!(metrics.last_success.get_or_create(&west).get(), 2_000);
        metrics.record_failed_pass(Duration::from_millis(1));
        assert_eq!(metrics.passes.get_or_create(&PassLabels { result: PassResult::Ok }).get(), 2);
        assert_eq!(metrics.passes.get_or_create(&PassLabels { result: PassResult::Error }).get(), 1);
        let text = metrics.encode();
        assert!(text.contains("interlock_pass_duration_seconds_count 3\n"), "{text}");
        assert!(text.contains("# TYPE interlock_passes_total counter\n"), "{text}");
        assert!(text.contains("interlock_writes_total{operation=\"update\",kind=\"service\"} 2\n"), "{text}");
        assert!(text.contains("interlock_quarantined_services{extension=\"east\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE interlock_pass_duration_seconds histogram\n"), "{text}");
        assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn task_ages_follow_the_reports() {
        let metrics = Metrics::new();
        let deliveries = Deliveries::default();
        let task = |id: &str, applied_at| crate::extension_api::TaskReport {
            task: id.into(),
            node: "lb-00".into(),
            container: "c".into(),
            hash: "h".into(),
            generation: 0,
            rejected: None,
            error: None,
            applied_at,
            took_ms: 5,
        };
        let on_lb = |tasks: &[&str]| tasks.iter().map(|t| ((*t).to_owned(), "lb-00".to_owned())).collect();
        deliveries.set_tasks("east", on_lb(&["t1", "t2"]));
        deliveries.accept_report("east", task("t1", 100)).unwrap();
        deliveries.accept_report("east", task("t2", 150)).unwrap();
        metrics.refresh_task_ages(&deliveries, ["east", "west"], 160);
        let labels = |id: &str| TaskLabels { extension: "east".into(), task: id.into(), node: "lb-00".into() };
        assert_eq!(metrics.config_age.get_or_create(&labels("t1")).get(), 60);
        assert_eq!(metrics.config_age.get_or_create(&labels("t2")).get(), 10);
        deliveries.set_tasks("east", on_lb(&["t2"]));
        metrics.refresh_task_ages(&deliveries, ["east"], 170);
        assert!(metrics.config_age.get(&labels("t1")).is_none(), "a gone task loses its series");
        assert_eq!(metrics.config_age.get_or_create(&labels("t2")).get(), 20);
    }

    #[test]
    fn label_to_config_times_from_the_first_event_to_the_change() {
        let start = Instant::now();
        let mut pending = PendingEvent::default();
        let mut quiet = PassReport::default();
        assert_eq!(pending.pass_done(&report(), start), None, "no event, nothing to time");
        pending.event(start + Duration::from_secs(2));
        pending.event(start + Duration::from_secs(1));
        quiet.apps_settling = vec!["app".into()];
        assert_eq!(pending.pass_done(&quiet, start + Duration::from_secs(3)), None, "tasks still starting");
        assert_eq!(pending.pass_done(&report(), start + Duration::from_secs(5)), Some(Duration::from_secs(4)));
        pending.event(start + Duration::from_secs(6));
        quiet.apps_settling = vec![];
        assert_eq!(pending.pass_done(&quiet, start + Duration::from_secs(7)), None);
        assert_eq!(pending.pass_done(&report(), start + Duration::from_secs(8)), None, "that event was dropped");
    }
}
