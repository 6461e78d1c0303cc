//! `interlock [--swarm-url URL] --plugin NAME start`: Interlock 0.3's plug-in host. Every event
//! of the engine goes to the plug-ins until SIGTERM or SIGINT; with `carbon` (0.3's `stats`) it
//! also starts the statistics agent on every node, as `run` would. Logs in 0.3's format.
//!
//! The engine is connected to here (the composition root of `start`); the agent's service is
//! written through [`Swarm`] and interlock's own image is read through [`NodeEngine`].

use std::process::ExitCode;

use interlock::carbon::CarbonSettings;
use interlock::core::context::Context;
use interlock::core::plugins::{self, Dispatcher, PluginSettings};
use interlock::core::proxycheck::ProxyChecker;
use interlock::docker::DockerClient;
use interlock::engine::NodeEngine;
use interlock::swarm::Swarm;
use reconcilers::config::{self, DockerUrl, TlsFiles};

use super::args::Legacy;

/// `interlock start`: Interlock 0.3's plug-in host. Logs as 0.3 did (the seed's lines), dispatches
/// `interlock-start`, every event of the engine, `interlock-stop` at SIGTERM/SIGINT, and exits 0
/// once the plug-ins' queues are drained (at most 2 s).
pub fn run(legacy: &Legacy) -> anyhow::Result<ExitCode> {
    if legacy.plugins.is_empty() {
        anyhow::bail!("no plug-in given: `interlock --plugin NAME start` (see `interlock list-plugins`)");
    }
    for name in &legacy.plugins {
        if plugins::canonical_name(name).is_none() {
            anyhow::bail!("{}", plugins::PluginError::Unknown { name: name.clone(), known: plugins::known_names() });
        }
    }
    let url = legacy
        .swarm_url
        .as_deref()
        .map(DockerUrl::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--swarm-url {e}"))?;
    let tls =
        TlsFiles { ca_cert: legacy.tls_ca_cert.clone(), cert: legacy.tls_cert.clone(), key: legacy.tls_key.clone() };
    if !tls.is_empty() && (tls.ca_cert.is_none() || tls.cert.is_none() || tls.key.is_none()) {
        anyhow::bail!("--swarm-tls-ca-cert, --swarm-tls-cert and --swarm-tls-key must be given together");
    }
    // Interlock 0.3's variables configure carbon (`stats`), read only when it is asked for.
    let wants_carbon = legacy.plugins.iter().any(|n| plugins::canonical_name(n) == Some(plugins::carbon::NAME));
    let settings = PluginSettings { carbon: if wants_carbon { Some(CarbonSettings::from_env()?) } else { None } };
    tracing::info!(
        "interlock running version={} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("INTERLOCK_GIT_COMMIT").unwrap_or("rust")
    );
    if matches!(url, Some(DockerUrl::Unix(_))) && !tls.is_empty() {
        tracing::warn!("the --swarm-tls-* files are ignored for a unix:// --swarm-url");
    }
    if legacy.allow_insecure {
        tracing::warn!(
            "--swarm-allow-insecure: the engine's certificate is still verified; interlock never skips verification"
        );
    }
    super::runtime()?.block_on(async {
        let shutdown = interlock::shutdown::termination()?;
        let docker = DockerClient::connect(url.as_ref(), &tls)?;
        host(&docker, &legacy.plugins, &settings, shutdown).await
    })
}

/// Dispatches every event of `docker`'s engine to the plug-ins `names` until `shutdown`.
async fn host<D: Swarm + NodeEngine>(
    docker: &D,
    names: &[String],
    settings: &PluginSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let engine = docker.engine().await?;
    tracing::debug!(endpoint = %docker.endpoint(), engine = %engine.version, "connected");
    let built = plugins::build(names, settings)?;
    for plugin in &built {
        tracing::info!("loading plugin name={} version={}", plugin.name(), plugin.version());
    }
    if let Some(carbon) = &settings.carbon {
        ensure_stats_agent(docker, carbon).await;
    }
    let dispatcher = Dispatcher::new(built);
    let stats = plugins::host(&dispatcher, || docker.all_events(), shutdown).await;
    for (name, s) in stats {
        if s.dropped + s.skipped + s.panicked > 0 {
            tracing::warn!(
                "plugin {name}: {} event(s) handled, {} dropped, {} skipped after retries, {} panicked",
                s.handled,
                s.dropped,
                s.skipped,
                s.panicked
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Interlock 0.3's `stats` sent what one engine saw; statistics from every node need the agent
/// on every node: `start` writes the statistics agent service (and the operator network) as `run`
/// would, and nothing else. Without a manager, or without an image to run it from, it says so.
async fn ensure_stats_agent<D: Swarm + NodeEngine>(docker: &D, carbon: &CarbonSettings) {
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    let core_image = match docker.container_image(&hostname).await {
        Ok(image) => image,
        Err(e) => {
            tracing::warn!("statistics from this engine only: {e}");
            return;
        }
    };
    let Some(core_image) = core_image else {
        tracing::warn!(
            "statistics from this engine only: run interlock in a container (a Swarm service) so that it can start its agent on every node"
        );
        return;
    };
    let Ok(loaded) = config::parse("interlock start", "") else { return };
    let mut config = loaded.config;
    config.plugins = reconcilers::config::Plugins {
        enabled: vec!["carbon".to_owned()],
        carbon: Some(reconcilers::config::CarbonConfig {
            address: carbon.address.clone(),
            prefix: carbon.prefix.clone(),
            image_name_filter: carbon.image_name_filter.clone(),
            interval: carbon.interval,
        }),
    };
    let mut ctx = Context::new(docker.clone(), ProxyChecker::unchecked());
    ctx.core_image = Some(core_image);
    match interlock::core::reconcile::ensure_agent(&ctx, &config).await {
        Ok(writes) => tracing::info!(writes, "statistics agent on every node"),
        Err(e) => tracing::warn!("statistics from this engine only: {e}"),
    }
}
