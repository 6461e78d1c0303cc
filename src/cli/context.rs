//! The composition root of the core's commands (`plan`, `apply`, `run`): the one place that
//! connects to a swarm manager and builds the [`Context`] the loop and the reconciler share
//! (Docker connection, proxy checker, the extensions' key, which replica this is, its own image
//! and service). Only the connection is made here on the adapter itself ([`DockerClient`]);
//! setting it up (is it a manager, the key, its own container) and everything after goes
//! through the [`Swarm`] seam ([`Context::swarm`]).

use interlock::core::context::{Context, Replica};
use interlock::core::proxycheck::ProxyChecker;
use interlock::docker::DockerClient;
use interlock::swarm::Swarm;
use reconcilers::config::Config;

/// The composition root: connects to a manager and builds the shared context.
/// `writer`: write whatever else runs (`--writer`); else this process writes only as
/// `reconcilers::leader` decides.
pub async fn context(config: &Config, writer: bool) -> anyhow::Result<Context<DockerClient>> {
    let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
    set_up(docker, writer).await
}

/// The shared context over `docker`, once it is known to be a manager.
async fn set_up<S: Swarm>(docker: S, writer: bool) -> anyhow::Result<Context<S>> {
    let engine = docker.require_manager().await?;
    tracing::debug!(engine = %engine.version, api = %engine.api_version, "connected to a swarm manager");
    // Hitless extensions' tokens derive from a key only managers can read.
    let key = docker.manager_join_token().await?;
    // Running as a Swarm task, the hostname is the container's ID.
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    let own = if hostname.is_empty() { None } else { docker.own_container(&hostname).await? };
    let mut ctx = Context::new(docker, ProxyChecker::discover());
    ctx.deliveries.set_key(key);
    ctx.deliveries.refuse_signed_before(interlock::core::status::unix_now());
    // Which replica this is: its own task (the stack sets INTERLOCK_TASK_ID from `{{.Task.ID}}`,
    // which works whichever manager's engine it talks to; else its container's label).
    let task = std::env::var("INTERLOCK_TASK_ID").ok().filter(|t| !t.is_empty() && !t.contains("{{"));
    let task = task.or_else(|| own.as_ref().and_then(|o| o.task.clone()));
    ctx.identity = match (writer, task) {
        (true, _) => Replica::Lone,
        (false, Some(task)) => Replica::Task(task),
        (false, None) => Replica::ByHand,
    };
    if let Some(own) = own {
        ctx.core_image = own.image;
        ctx.core_service = own.service;
    }
    if ctx.core_service.is_none() {
        ctx.core_service = std::env::var("INTERLOCK_SERVICE_NAME").ok().filter(|s| !s.is_empty() && !s.contains("{{"));
    }
    Ok(ctx)
}
