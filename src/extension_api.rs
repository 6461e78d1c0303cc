//! What the core and its hitless extensions say to each other over `/v1/extensions/…`, beside
//! the signed requests (`reconcilers::token`) and the configs (`reconcilers::desired::Delivery`):
//! a proxy task's report, and the header a standby core names the writer in. Shared by the core
//! (`crate::core::delivery`, which serves the API) and `crate::extension` (its client).

use serde::{Deserialize, Serialize};

/// The header a standby names the writer's node in.
pub const WRITER_HEADER: &str = "x-interlock-writer";

/// What an extension says about one proxy task after writing a config into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The Swarm task ID.
    pub task: String,
    /// The Swarm node ID the task runs on.
    pub node: String,
    pub container: String,
    /// The config the task runs now (after a rejection: the one it kept).
    pub hash: String,
    /// Its delivery's generation (0: the config the task was started with).
    #[serde(default)]
    pub generation: u64,
    /// The config it was asked to take, when the task's binary rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The binary's or the write's error, with `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix time (seconds) the task took `hash`.
    pub applied_at: u64,
    /// Milliseconds from receiving the config to the reload signal.
    pub took_ms: u64,
}
