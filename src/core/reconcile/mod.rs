//! The reconciler: runs passes that read the swarm, ask the core (`reconcilers`) what to write,
//! and write it, keeping between passes what a pass alone cannot know (the clusters' write tasks
//! and backoff, the culprits found, the role last logged).
//!
//! # Files, by job
//! - `pass.rs`: [`Reconciler`]: one pass (observe, plan, check, write), in order; the error
//!   that stops a pass ([`ReconcileError`]).
//! - `culprit.rs`: every new proxy config checked before it is rolled out, and the bisection
//!   that finds the services whose labels make the proxy reject one.
//! - `write.rs`: one write, the per-cluster write tasks with their backoff and conflicts, node
//!   label updates decided afresh after a lost lock.
//! - `role.rs`: which of the core's replicas writes ([`core_service_running`]).
//! - `agent_service.rs`: the statistics agent's service alone, for `interlock start`
//!   ([`ensure_agent`]).

mod agent_service;
mod culprit;
mod pass;
mod role;
#[cfg(test)]
mod tests;
mod write;

pub use agent_service::ensure_agent;
pub use pass::{ReconcileError, Reconciler};
pub use role::core_service_running;
