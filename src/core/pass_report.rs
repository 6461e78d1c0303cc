//! The outcome of one pass ([`PassReport`]): what the reconciler returns, and what the loop
//! hands to the status, the metrics and the plug-ins. Its own module, so that they read it
//! without depending on the pass that makes it.

use std::collections::BTreeMap;

use reconcilers::plan::Plan;

/// The outcome of one pass: what it planned and wrote, and what it left for later.
#[derive(Debug, Default)]
pub struct PassReport {
    pub plan: Plan,
    /// Writes done.
    pub writes: usize,
    /// By extension: why its writes stopped.
    pub failures: BTreeMap<String, String>,
    /// Extensions skipped because they are backing off after a failure.
    pub backing_off: Vec<String>,
    /// Extensions skipped because their previous writes are still running.
    pub busy: Vec<String>,
    /// Extensions whose write was refused because an object changed since it was read: they
    /// are planned again from a fresh read shortly.
    pub conflicts: Vec<String>,
    /// App services still starting tasks when the swarm was read (their IDs).
    pub apps_settling: Vec<String>,
    /// This replica is a standby and wrote nothing: the leader's hostname ("" while Raft elects).
    pub standby: Option<String>,
    /// Owned services not yet running their spec when the swarm was read.
    pub unsettled: Vec<String>,
}
