//! `interlock agent`: the per-node stats agent behind the `carbon` plug-in. A manager's engine
//! only knows its own containers, so statistics from every node need a process on every node: the
//! agent runs as a global Swarm service, one task per node, with that node's Docker socket
//! mounted, and sends straight to Carbon through its own [`CarbonSink`].
//!
//! ```text
//!  every STATS_INTERVAL:
//!    list this node's running containers
//!    ├─ image matches STATS_IMAGE_NAME_FILTER ─▶ one stats reading each (stream=false, one-shot,
//!    │                                            8 at a time) ─▶ PREFIX.containers.nodes.NODE.CONTAINER.*
//!    └─ a proxy task (its service in INTERLOCK_STATS_PROXIES) ─▶ exec: GET its status page on
//!                                                  127.0.0.1 ─▶ PREFIX.proxies.NODE.CONTAINER.*
//! ```
//!
//! **Series.** Interlock 0.3's (`docs/plugins.md`, "Plug-ins: carbon"), with the node as the
//! engine's name (`docker info`'s `Name`, the Swarm node's hostname): under
//! `PREFIX.containers.nodes.<node>.<container>.`: `cpu.totalUsage`, `cpu.usageInKernelmode`,
//! `cpu.usageInUsermode` (nanoseconds, cumulative), `memory.usage`, `memory.maxUsage`,
//! `memory.failcnt`, `memory.limit` (bytes), `memory.percent` (usage / limit × 100),
//! `network.{rx,tx}{Bytes,Packets,Errors,Dropped}` (summed over the container's interfaces).
//! Node and container names are one path component each ([`sanitize`]: a task container
//! `web.1.x2k` is `web_1_x2k`). Proxy tasks, under `PREFIX.proxies.<node>.<container>.`:
//! `requests` (total, cumulative) and `active` (connections now); nginx adds `accepts`,
//! `handled`, `reading`, `writing`, `waiting` (its `stub_status`).
//!
//! **Proxies.** The generated nginx config serves `stub_status` at `/nginx_status` on its HTTP
//! port (`TargetPort`) in the default server, and HAProxy serves its stats (CSV with `;csv`) at
//! `/haproxy?stats` on a loopback-only frontend (port 8404, `proxy::haproxy::stats_port`), and
//! also on its HTTP port with credentials when the TOML sets `AdminUser`. Both listen inside the task,
//! whose network the agent is not on, so the agent runs a small `sh` script in the container
//! (the exec API) that fetches the page from 127.0.0.1 with curl, wget, or bash's `/dev/tcp`,
//! whichever the image has: stock nginx/HAProxy images (Debian or Alpine) have one of them, and
//! the lab's Debian minbase proxy image has bash. The `Host` header is `interlock_stats`, a name no
//! route can claim (host labels cannot hold `_`), so nginx answers from its default server. Which
//! services are proxies, their kind, port and HAProxy credentials come from
//! `INTERLOCK_STATS_PROXIES`, set by the core (a proxy task's containers carry only the labels the
//! TOML gives them).
//!
//! A Carbon outage never blocks a reading (the sink buffers, drops the oldest and resumes); a
//! reading never overlaps the next (late ticks are skipped); a container that stopped between the
//! list and its reading is skipped.
//!
//! **A failing engine** is never hammered: reading the node's name at start is retried after 1 s,
//! doubling up to the interval (at most 30 s, [`start_backoff`]); after that every call waits for
//! the next tick, so a failed list or reading is tried again one interval later. The engine is a
//! [`NodeEngine`] (the Docker adapter's, [`crate::docker`], or a fake in the tests).
//!
//! # Files
//! - `mod.rs`: the loop ([`run`]): the node's name with backoff, then one collection per
//!   interval, sent to the sink.
//! - `settings.rs`: what the agent is told through its environment ([`AgentSettings`],
//!   [`ENV_PROXIES`]).
//! - `series.rs`: Interlock 0.3's Carbon series from a container reading and a proxy reading.
//! - `proxies.rs`: the proxies' status pages, fetched inside their containers and parsed.

mod proxies;
mod series;
mod settings;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use regex::Regex;
use tracing::{debug, info, warn};

use crate::carbon::{CarbonError, CarbonSink, now_seconds, sanitize};
use crate::engine::{ContainerStats, EngineError, NodeEngine, RunningContainer};
use crate::retry::Backoff;
use proxies::{ProxyReading, read_proxy};
use series::{container_lines, proxy_lines};
pub use settings::{AgentSettings, ENV_PROXIES, ProxyTarget};

/// Stats readings (and proxy status fetches) in flight at once.
const CONCURRENCY: usize = 8;
/// The longest wait between two attempts to read the node's name at start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// The wait after the `failures`-th failed attempt to read the node's name: 1 s, doubling, up to
/// the interval (at least 1 s, at most [`MAX_START_BACKOFF`]).
pub fn start_backoff(failures: u32, interval: Duration) -> Duration {
    Backoff::new(Duration::from_secs(1), interval.clamp(Duration::from_secs(1), MAX_START_BACKOFF)).delay(failures)
}

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Carbon(#[from] CarbonError),
    #[error("{ENV_PROXIES}: {reason}")]
    Proxies { reason: String },
}

/// Runs until `shutdown` completes. `docker` is this node's engine (its socket mounted into the
/// agent's task), through the Docker adapter ([`crate::docker`]).
pub async fn run<E: NodeEngine>(
    settings: AgentSettings,
    docker: E,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    settings.carbon.validate()?;
    let sink = CarbonSink::spawn(&settings.carbon.address)?;
    run_sending_to(settings, docker, sink, shutdown).await
}

/// [`run`], sending over `sink`, a connection to Carbon already open and shared (`interlock
/// start` reads the engine it is connected to with this loop and sends over its plug-in's
/// connection).
pub async fn run_sending_to<E: NodeEngine>(
    settings: AgentSettings,
    docker: E,
    sink: CarbonSink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let filter = settings.carbon.image_filter()?;
    tokio::pin!(shutdown);
    let interval = settings.carbon.interval;
    // The node's name, from its engine: wait for the engine as long as it takes, backing off.
    let mut failures = 0;
    let node = loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            name = docker.node_name() => match name {
                Ok(name) => break name,
                Err(e) => {
                    failures += 1;
                    let delay = start_backoff(failures, interval);
                    warn!(error = %e, retry_in_s = delay.as_secs_f64(), "cannot read this node's engine; retrying");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    };
    info!(
        node = %node,
        carbon = %settings.carbon.address,
        prefix = %settings.carbon.prefix,
        filter = settings.carbon.image_name_filter.as_deref().unwrap_or("(all)"),
        interval_s = interval.as_secs_f64(),
        proxies = settings.proxies.len(),
        "stats agent up: sending this node's container statistics to Carbon"
    );
    let mut agent = Agent { docker, sink, filter, node: sanitize(&node), settings, failing: BTreeSet::new() };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = agent.collect() => {}
        }
    }
    info!(node = %node, sink = ?agent.sink.stats(), "stats agent stopping");
    Ok(())
}

struct Agent<E> {
    docker: E,
    sink: CarbonSink,
    filter: Regex,
    /// This node's name, sanitised.
    node: String,
    settings: AgentSettings,
    /// Proxy containers whose last status fetch failed (warned once, until one works).
    failing: BTreeSet<String>,
}

impl<E: NodeEngine> Agent<E> {
    /// One reading of every matching container and proxy task on the node, sent to the sink.
    /// Each engine call is made once: whatever fails waits for the next call of `collect`.
    async fn collect(&mut self) {
        let started = Instant::now();
        let ts = now_seconds();
        let containers = match self.docker.running_containers().await {
            Ok(containers) => containers,
            Err(e) => {
                warn!(error = %e, "cannot list this node's containers; trying again next interval");
                return;
            }
        };
        let prefix = self.settings.carbon.prefix.as_str();
        let measured: Vec<&RunningContainer> = containers.iter().filter(|c| self.filter.is_match(&c.image)).collect();
        let docker = &self.docker;
        let readings: Vec<(&RunningContainer, Result<Option<ContainerStats>, EngineError>)> =
            futures_util::stream::iter(measured)
                .map(|c| async move { (c, docker.container_stats(&c.id).await) })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut lines = Vec::new();
        let mut read = 0;
        for (c, reading) in readings {
            match reading {
                Ok(Some(stats)) => {
                    read += 1;
                    lines.extend(container_lines(prefix, &self.node, &c.name, &stats, ts));
                }
                Ok(None) => debug!(container = %c.name, "no stats reading (stopped?)"),
                Err(EngineError::NotFound(_)) => debug!(container = %c.name, "stopped before its reading"),
                Err(e) => warn!(container = %c.name, error = %e, "cannot read container stats"),
            }
        }

        let proxies: Vec<(&RunningContainer, &ProxyTarget)> = containers
            .iter()
            .filter_map(|c| {
                let service = c.service.as_deref()?;
                Some((c, self.settings.proxies.iter().find(|p| p.service == service)?))
            })
            .collect();
        let statuses: Vec<(&RunningContainer, Result<ProxyReading, String>)> = futures_util::stream::iter(proxies)
            .map(|(c, p)| async move { (c, read_proxy(docker, &c.id, p).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (c, status) in statuses {
            match status {
                Ok(reading) => {
                    if self.failing.remove(&c.id) {
                        info!(container = %c.name, "proxy status readable again");
                    }
                    lines.extend(proxy_lines(prefix, &self.node, &c.name, &reading, ts));
                }
                Err(reason) if self.failing.insert(c.id.clone()) => {
                    warn!(container = %c.name, %reason, "cannot read the proxy's status (said once until it works)");
                }
                Err(reason) => debug!(container = %c.name, %reason, "cannot read the proxy's status"),
            }
        }
        let live: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.failing.retain(|id| live.contains(id.as_str()));

        debug!(
            containers = containers.len(),
            measured = read,
            lines = lines.len(),
            took_ms = started.elapsed().as_millis() as u64,
            sink = ?self.sink.stats(),
            "stats sent"
        );
        self.sink.send_all(lines);
    }
}

#[cfg(test)]
mod tests {
    use reconcilers::config::ProxyKind;

    use super::*;
    use crate::carbon::CarbonSettings;
    use crate::engine::{ExecOutput, LocalContainer};

    /// An engine that counts its calls: `name` / `list` fail when set; each container's
    /// reading is `stats` (none: it fails); exec always fails.
    #[derive(Default)]
    struct FakeEngine {
        name_fails: bool,
        list_fails: bool,
        containers: Vec<RunningContainer>,
        stats: Option<ContainerStats>,
        calls: std::sync::Arc<Calls>,
    }

    #[derive(Default, Debug)]
    struct Calls {
        name: std::sync::atomic::AtomicU32,
        list: std::sync::atomic::AtomicU32,
        stats: std::sync::atomic::AtomicU32,
        exec: std::sync::atomic::AtomicU32,
    }

    impl Calls {
        /// (name, list, stats, exec).
        fn counts(&self) -> (u32, u32, u32, u32) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.name.load(SeqCst), self.list.load(SeqCst), self.stats.load(SeqCst), self.exec.load(SeqCst))
        }
    }

    fn refused(operation: &str) -> EngineError {
        EngineError::Failed(format!(
            "cannot reach the Docker engine at unix:///var/run/docker.sock: {operation}: refused"
        ))
    }

    impl NodeEngine for FakeEngine {
        async fn node_name(&self) -> Result<String, EngineError> {
            self.calls.name.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.name_fails { Err(refused("info")) } else { Ok("node-1".into()) }
        }

        async fn running_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
            self.calls.list.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.list_fails { Err(refused("list")) } else { Ok(self.containers.clone()) }
        }

        async fn container_stats(&self, _id: &str) -> Result<Option<ContainerStats>, EngineError> {
            self.calls.stats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.stats.clone().map(Some).ok_or_else(|| refused("stats"))
        }

        async fn exec(&self, _container: &str, _argv: &[String]) -> Result<ExecOutput, EngineError> {
            self.calls.exec.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(refused("exec"))
        }

        // The extension's calls: the agent makes none of them.
        async fn service_containers(&self, _service: &str) -> Result<Vec<LocalContainer>, EngineError> {
            unreachable!("the agent lists every container")
        }

        async fn write_files(&self, _container: &str, _files: &[(String, Vec<u8>)]) -> Result<(), EngineError> {
            unreachable!("the agent writes nothing")
        }

        async fn signal(&self, _container: &str, _signal: &str) -> Result<(), EngineError> {
            unreachable!("the agent signals nothing")
        }

        fn container_starts(
            &self,
            _service: &str,
        ) -> impl futures_util::Stream<Item = Result<String, EngineError>> + Send + 'static {
            futures_util::stream::empty()
        }

        async fn container_image(&self, _id: &str) -> Result<Option<String>, EngineError> {
            unreachable!("the agent inspects no container")
        }
    }

    /// Settings with `interval`; nothing is ever sent, so the address is never dialled.
    fn settings(interval: Duration, proxies: Vec<ProxyTarget>) -> AgentSettings {
        AgentSettings {
            carbon: CarbonSettings { address: "127.0.0.1:2003".into(), interval, ..CarbonSettings::default() },
            proxies,
        }
    }

    /// Runs the agent on `engine` for `for_` of paused time; returns its calls.
    async fn run_for(settings: AgentSettings, engine: FakeEngine, for_: Duration) -> (u32, u32, u32, u32) {
        let calls = engine.calls.clone();
        let started = tokio::time::Instant::now();
        run(settings, engine, tokio::time::sleep(for_)).await.unwrap();
        assert_eq!(started.elapsed(), for_, "shutdown ends the agent at once");
        calls.counts()
    }

    #[test]
    fn the_start_backoff_doubles_from_1_s_up_to_the_interval_or_30_s() {
        let secs = |interval: u64| -> Vec<u64> {
            (1..=8).map(|n| start_backoff(n, Duration::from_secs(interval)).as_secs()).collect()
        };
        assert_eq!(secs(10), [1, 2, 4, 8, 10, 10, 10, 10]);
        assert_eq!(secs(120), [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(secs(1), [1; 8]);
        assert_eq!(start_backoff(u32::MAX, Duration::from_secs(60)), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_that_always_fails_is_retried_with_backoff_at_start() {
        let engine = FakeEngine { name_fails: true, ..FakeEngine::default() };
        let calls = run_for(settings(Duration::from_secs(10), vec![]), engine, Duration::from_secs(60)).await;
        // Waits of 1, 2, 4, 8, then 10 s (the interval): attempts at 0, 1, 3, 7, 15, 25, 35,
        // 45 and 55 s, the next one at 65 s. Nothing else is called before the name is known.
        assert_eq!(calls, (9, 0, 0, 0));
        // A long interval: the waits stop growing at 30 s (0, 1, 3, 7, 15, 31 s; then 61 s).
        let engine = FakeEngine { name_fails: true, ..FakeEngine::default() };
        let calls = run_for(settings(Duration::from_secs(300), vec![]), engine, Duration::from_secs(60)).await;
        assert_eq!(calls, (6, 0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_container_list_is_tried_once_per_interval() {
        let engine = FakeEngine { list_fails: true, ..FakeEngine::default() };
        let (name, list, ..) =
            run_for(settings(Duration::from_secs(10), vec![]), engine, Duration::from_secs(60)).await;
        // Ticks at 0, 10, .., 50 s, and 60 s when it comes before the shutdown.
        assert_eq!(name, 1);
        assert!((6..=7).contains(&list), "{list} lists in 60 s at one per 10 s");
    }

    fn container(id: &str, service: Option<&str>) -> RunningContainer {
        RunningContainer {
            id: id.into(),
            name: format!("{id}.1.x"),
            image: "app:1".into(),
            service: service.map(str::to_owned),
            labels: Default::default(),
        }
    }

    /// What `interlock -p stats start` runs against the engine it is connected to when no agent
    /// service covers it (a plain process): this loop, whose lines are 0.3's series of that
    /// engine's containers under its name, matching the image filter.
    #[tokio::test]
    async fn the_engines_matching_containers_become_0_3s_series_at_carbon() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut other = container("db", None);
        other.image = "postgres:16".into();
        let engine = FakeEngine {
            containers: vec![container("web", None), other],
            stats: Some(ContainerStats { cpu_total: 42, memory_usage: 5, memory_limit: 10, ..Default::default() }),
            ..FakeEngine::default()
        };
        let calls = engine.calls.clone();
        let carbon = CarbonSettings {
            address: listener.local_addr().unwrap().to_string(),
            prefix: "p".into(),
            image_name_filter: Some("^app:".into()),
            interval: Duration::from_secs(60),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = run(AgentSettings { carbon, proxies: vec![] }, engine, async {
            stopped.await.ok();
        });
        let carbon = async {
            let (lines, _conn) = crate::carbon::tests::accept_lines(&listener, 16).await;
            stop.send(()).unwrap();
            lines
        };
        let (ran, lines) = tokio::join!(agent, carbon);
        ran.unwrap();
        let keys: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert!(lines[0].starts_with("p.containers.nodes.node-1.web_1_x.cpu.totalUsage 42 "), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("p.containers.nodes.node-1.web_1_x.memory.percent 50.0000 ")));
        assert!(keys.iter().all(|k| k.starts_with("p.containers.nodes.node-1.web_1_x.")), "the filter: {keys:?}");
        assert_eq!(calls.counts().2, 1, "one reading: only the matching container");
    }

    #[tokio::test(start_paused = true)]
    async fn failing_readings_are_tried_once_per_container_per_interval() {
        let engine = FakeEngine {
            containers: vec![container("web", None), container("proxy", Some("proxy"))],
            ..FakeEngine::default()
        };
        let proxy = ProxyTarget { service: "proxy".into(), kind: ProxyKind::Nginx, port: 80, credentials: None };
        let (name, list, stats, exec) =
            run_for(settings(Duration::from_secs(10), vec![proxy]), engine, Duration::from_secs(60)).await;
        assert_eq!(name, 1);
        assert!((6..=7).contains(&list), "{list} lists in 60 s at one per 10 s");
        assert_eq!((stats, exec), (2 * list, list), "one reading per container and one exec per proxy per list");
    }
}
