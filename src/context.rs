//! What every part of the running operator shares, built once by the composition root
//! (`main.rs`) and handed to the loop ([`crate::controller::run`]) and the reconciler: the swarm
//! connection, the proxy config checker, and the status (the one set of loop counters, served on
//! `ListenAddr` and logged).
//!
//! Features that need shared state get a field here, not a global: the configs served to
//! hitless extensions and their reports ([`Deliveries`]); next, plug-in dispatch, metrics
//! registries, leadership.

use std::sync::Arc;

use crate::delivery::Deliveries;
use crate::proxycheck::ProxyChecker;
use crate::status::SharedStatus;
use crate::swarm::Swarm;

/// Shared by the loop, the reconciler and the status server. Cheap to clone.
#[derive(Clone)]
pub struct Context<S> {
    pub swarm: S,
    pub checker: Arc<ProxyChecker>,
    pub status: SharedStatus,
    /// Configs served to hitless extensions, their tasks' reports, and the key of their tokens.
    pub deliveries: Arc<Deliveries>,
}

impl<S: Swarm> Context<S> {
    pub fn new(swarm: S, checker: ProxyChecker) -> Self {
        Self { swarm, checker: Arc::new(checker), status: SharedStatus::default(), deliveries: Arc::default() }
    }
}
