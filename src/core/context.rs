//! What every part of the running core shares, built once by the composition root (the
//! binary's `cli/context.rs`) and handed to the loop ([`crate::core::controller::run`]) and the
//! reconciler: the swarm connection, the proxy config checker, and the status (the one set of
//! loop counters, served on `ListenAddr` and logged).
//!
//! Features that need shared state get a field here, not a global: the configs served to
//! hitless extensions and their reports ([`Deliveries`]); the plug-ins' [`Dispatcher`]; the
//! Prometheus [`Metrics`]; who this process is among the core's replicas ([`Replica`]).

use std::sync::Arc;

use reconcilers::config::Config;
use reconcilers::desired::Environment;

use crate::core::acme::AcmeState;
use crate::core::delivery::Deliveries;
use crate::core::metrics::Metrics;
use crate::core::plugins::Dispatcher;
use crate::core::proxycheck::ProxyChecker;
use crate::core::status::SharedStatus;
use crate::swarm::Swarm;

/// Shared by the loop, the reconciler and the status server. Cheap to clone.
#[derive(Clone)]
pub struct Context<S> {
    pub swarm: S,
    pub checker: Arc<ProxyChecker>,
    pub status: SharedStatus,
    /// Configs served to hitless extensions, their tasks' reports, and the key of their tokens.
    pub deliveries: Arc<Deliveries>,
    /// The plug-ins `[Plugins]` enables (none by default): the loop dispatches interlock's and
    /// the swarm's events to them, never waiting for one.
    pub plugins: Arc<Dispatcher>,
    /// The Prometheus metrics, updated by the loop and served as `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The image interlock runs from, when it runs as a Swarm task (what the statistics agent
    /// runs).
    pub core_image: Option<String>,
    /// The Swarm service interlock runs as, when it does (what extensions call it by).
    pub core_service: Option<String>,
    /// Who this process is among the cores that may run (`reconcilers::leader`): a replica of
    /// the core service (its task), a core run by hand, or a lone core (the unit tests).
    pub identity: Replica,
    /// ACME: the answers being published, the certificates read back, each host's order
    /// (`crate::core::acme::state`).
    pub acme: Arc<AcmeState>,
}

/// Who this process is, as far as the shell could tell when it started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Replica {
    /// Writes whatever else runs: unit tests, and `run --writer` / `apply --writer`.
    #[default]
    Lone,
    /// A task of the core service (its task ID, from its container's labels).
    Task(String),
    /// Run by hand (not a Swarm task): writes only while no core service runs.
    ByHand,
}

impl<S: Swarm> Context<S> {
    pub fn new(swarm: S, checker: ProxyChecker) -> Self {
        Self {
            swarm,
            checker: Arc::new(checker),
            status: SharedStatus::default(),
            deliveries: Arc::default(),
            plugins: Arc::default(),
            metrics: Arc::default(),
            core_image: None,
            core_service: None,
            identity: Replica::Lone,
            acme: Arc::default(),
        }
    }

    /// The same context, dispatching to `plugins`.
    pub fn with_plugins(mut self, plugins: Dispatcher) -> Self {
        self.plugins = Arc::new(plugins);
        self
    }

    /// What the core is told about where the operator runs, for `config`.
    pub fn environment(&self, config: &Config) -> Environment {
        Environment::new(config).with_extension_key(self.deliveries.key()).running_as(
            config,
            self.core_service.clone(),
            self.core_image.clone(),
        )
    }
}
