//! The statistics agent's service, written alone: for Interlock 0.3's `interlock start`, which
//! routes nothing and must not touch the objects a TOML-driven core owns, but whose `carbon`
//! plug-in gathers every node's statistics through the agent (`interlock agent`, one task per
//! node).

use reconcilers::config::Config;
use reconcilers::desired;
use reconcilers::plan;
use tracing::info;

use super::pass::ReconcileError;
use super::write::execute;
use crate::core::context::Context;
use crate::swarm::Swarm;

/// Writes only the operator network and the statistics agent `config` implies, nothing else (no
/// cluster, no collection). Returns the writes made.
pub async fn ensure_agent<S: Swarm>(ctx: &Context<S>, config: &Config) -> Result<usize, ReconcileError> {
    let env = ctx.environment(config);
    let mut writes = 0;
    // The network first, then the agent that joins it.
    for _ in 0..2 {
        let observed = ctx.swarm.observe().await.map_err(ReconcileError::Observe)?;
        let plan = plan::plan(&desired::desired_state(config, &observed, &env), &observed);
        if plan.shared.is_empty() && plan.agent.is_empty() {
            break;
        }
        for action in plan.shared.iter().chain(&plan.agent) {
            info!("{action}");
            execute(&ctx.swarm, action).await.map_err(ReconcileError::Network)?;
            writes += 1;
        }
    }
    Ok(writes)
}
