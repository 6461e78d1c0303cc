//! `interlock [--swarm-url URL] --plugin NAME start`: Interlock 0.3's plug-in host. Every event
//! of the engine goes to the plug-ins until SIGTERM or SIGINT. Logs in 0.3's format.
//!
//! With `carbon` (0.3's `stats`), container statistics too: run as a Swarm service on a manager,
//! `start` writes the statistics agent's service, one task per node, as `run` would; otherwise
//! (a plain process, as 0.3 ran, or an engine outside a swarm, or a worker) it reads the
//! containers of the engine it is connected to itself, with the agent's own loop
//! ([`interlock::agent::run`]), and sends 0.3's series for them, and on a manager it says how the
//! other nodes' series are had (the agent as a global service).
//!
//! The engine is connected to here (the composition root of `start`); the agent's service is
//! written through [`Swarm`], interlock's own image and the engine's containers are read through
//! [`NodeEngine`].

use std::process::ExitCode;

use futures_util::FutureExt as _;
use interlock::agent::AgentSettings;
use interlock::carbon::{CarbonSettings, CarbonSink};
use interlock::core::context::Context;
use interlock::core::plugins::{self, Dispatcher, PluginSettings};
use interlock::core::proxycheck::ProxyChecker;
use interlock::docker::DockerClient;
use interlock::engine::NodeEngine;
use interlock::swarm::Swarm;
use reconcilers::config::{self, DockerUrl, TlsFiles};
use reconcilers::desired::{AGENT_SERVICE, DOCKER_SOCKET};
use reconcilers::observed::{EngineFacts, SwarmMembership};

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
    // Interlock 0.3's variables configure carbon (`stats`), read only when it is asked for, with
    // the agent's (`INTERLOCK_STATS_PROXIES`) for the statistics read from this engine.
    let wants_carbon = legacy.plugins.iter().any(|n| plugins::canonical_name(n) == Some(plugins::carbon::NAME));
    let agent = if wants_carbon { Some(AgentSettings::from_env()?) } else { None };
    let settings = PluginSettings { carbon: agent.as_ref().map(|a| a.carbon.clone()), carbon_sink: None };
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
        host(&docker, &legacy.plugins, &settings, agent, shutdown).await
    })
}

/// Dispatches every event of `docker`'s engine to the plug-ins `names` until `shutdown`; with
/// `agent` (carbon), container statistics too: the agent's service on every node, or this
/// engine's read here.
async fn host<D: Swarm + NodeEngine>(
    docker: &D,
    names: &[String],
    settings: &PluginSettings,
    agent: Option<AgentSettings>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let engine = docker.engine().await?;
    tracing::debug!(endpoint = %docker.endpoint(), engine = %engine.version, "connected");
    // One connection to Carbon for the plug-in and this engine's statistics (settings that do
    // not validate are the plug-in's to refuse, below).
    let valid = agent.as_ref().filter(|a| a.carbon.validate().is_ok());
    let sink = valid.map(|a| CarbonSink::spawn(&a.carbon.address)).transpose()?;
    let settings = PluginSettings { carbon_sink: sink.clone(), ..settings.clone() };
    let built = plugins::build(names, &settings)?;
    for plugin in &built {
        tracing::info!("loading plugin name={} version={}", plugin.name(), plugin.version());
    }
    // This engine's statistics, unless the agent's service covers every node (this one too).
    let this_engine = match agent {
        Some(agent) if !ensure_stats_agent(docker, &agent.carbon, &engine).await => Some(agent),
        _ => None,
    };
    let dispatcher = Dispatcher::new(built);
    // One signal ends both.
    let shutdown = shutdown.shared();
    let events = plugins::host(&dispatcher, || docker.all_events(), shutdown.clone());
    let stats = match this_engine.zip(sink) {
        None => events.await,
        Some((agent, sink)) => {
            let collect = interlock::agent::run_sending_to(agent, docker.clone(), sink, shutdown.clone());
            let (stats, collected) = tokio::join!(events, collect);
            if let Err(e) = collected {
                tracing::warn!("no statistics from this engine: {e}");
            }
            stats
        }
    };
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
/// would, and nothing else, when it runs in a container (the agent's image is its own) on a
/// manager. Returns whether it did; if not, the caller reads this engine itself, and this says
/// why (and, on a manager, how the other nodes' statistics are had).
async fn ensure_stats_agent<D: Swarm + NodeEngine>(docker: &D, carbon: &CarbonSettings, engine: &EngineFacts) -> bool {
    let this_engine = |why: &str| tracing::warn!("statistics from this engine ({}) only: {why}", engine.name);
    // A Swarm task's hostname is its container's ID; a plain process may have none.
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    let core_image = match hostname.trim() {
        "" => None,
        hostname => match docker.container_image(hostname).await {
            Ok(image) => image,
            Err(e) => {
                this_engine(&e.to_string());
                return false;
            }
        },
    };
    let Some(core_image) = core_image else {
        match other_nodes_hint(engine, carbon) {
            Some(hint) => this_engine(&hint),
            None => tracing::info!("statistics from this engine ({})", engine.name),
        }
        return false;
    };
    let Ok(loaded) = config::parse("interlock start", "") else { return false };
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
        Ok(writes) => {
            tracing::info!(writes, "statistics agent on every node");
            true
        }
        Err(e) => {
            this_engine(&e.to_string());
            false
        }
    }
}

/// What a plain process on `engine` says about the other nodes' statistics: on a manager, the
/// agent as a global service on every other node (or `start` itself as a Swarm service, which
/// then writes it); on a worker, that a manager's `start` gets them; outside a swarm, nothing
/// (this engine is all there is).
fn other_nodes_hint(engine: &EngineFacts, carbon: &CarbonSettings) -> Option<String> {
    match &engine.swarm {
        SwarmMembership::Manager { node_id } => {
            let mut env = vec![
                format!("STATS_CARBON_ADDRESS={}", carbon.address),
                format!("STATS_PREFIX={}", carbon.prefix),
                format!("STATS_INTERVAL={}", carbon.interval.as_millis().div_ceil(1000).max(1)),
            ];
            env.extend(carbon.image_name_filter.iter().map(|f| format!("STATS_IMAGE_NAME_FILTER={f}")));
            let env: String = env.iter().map(|e| format!(" -e {}", shell_word(e))).collect();
            Some(format!(
                "the other nodes' series come from the statistics agent, one task per node: run `interlock -p stats start` \
                 as a Swarm service (it then starts the agent on every node), or start it on the other nodes yourself: \
                 docker service create --name {AGENT_SERVICE} --mode global --constraint node.id!={node_id} \
                 --mount type=bind,source={DOCKER_SOCKET},target={DOCKER_SOCKET}{env} INTERLOCK_IMAGE agent \
                 (Carbon's address must be one the nodes reach)"
            ))
        }
        SwarmMembership::Worker { .. } => Some(
            "a worker's engine knows only its own containers; run `interlock -p stats start` on a manager for every node's"
                .to_owned(),
        ),
        SwarmMembership::None | SwarmMembership::Other { .. } => None,
    }
}

/// `text` as one shell word: as it is when it has nothing a shell reads specially.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._:/=@%+,-".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn engine(swarm: SwarmMembership) -> EngineFacts {
        EngineFacts {
            version: "27.5".into(),
            api_version: "1.47".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            name: "mgr-00".into(),
            swarm,
        }
    }

    #[test]
    fn a_plain_process_says_where_the_other_nodes_statistics_come_from() {
        let carbon = CarbonSettings {
            address: "carbon.example:2003".into(),
            prefix: "docker.stats".into(),
            image_name_filter: Some("^myorg/(web|api)".into()),
            interval: Duration::from_millis(2500),
        };
        let hint = other_nodes_hint(&engine(SwarmMembership::Manager { node_id: "n1".into() }), &carbon).unwrap();
        assert!(hint.contains("as a Swarm service"), "{hint}");
        assert!(
            hint.contains(
                "docker service create --name interlock-stats-agent --mode global --constraint node.id!=n1 \
                 --mount type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock \
                 -e STATS_CARBON_ADDRESS=carbon.example:2003 -e STATS_PREFIX=docker.stats -e STATS_INTERVAL=3 \
                 -e 'STATS_IMAGE_NAME_FILTER=^myorg/(web|api)' INTERLOCK_IMAGE agent"
            ),
            "{hint}"
        );
        let worker = other_nodes_hint(&engine(SwarmMembership::Worker { node_id: "n2".into() }), &carbon).unwrap();
        assert!(worker.contains("on a manager"), "{worker}");
        assert_eq!(other_nodes_hint(&engine(SwarmMembership::None), &carbon), None, "one engine: nothing else");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
