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
//! **Series.** Interlock 0.3's (`shared/reference/interlock.md` §5), with the node as the
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
//! [`NodeEngine`] ([`DockerClient`], or a fake in the tests).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use reconcilers::config::ProxyKind;
use regex::Regex;
use tracing::{debug, info, warn};

use crate::core::plugins::carbon::{CarbonError, CarbonSettings, CarbonSink, line, now_seconds, sanitize};
use crate::docker::{ContainerStats, DockerClient, DockerError, ExecOutput, RunningContainer};

/// The proxy services on the node and how to read them: a JSON list of
/// `{"service": NAME, "kind": "nginx"|"haproxy", "port": TargetPort, "user": .., "password": ..}`
/// (`user`/`password`: HAProxy's `AdminUser`/`AdminPass`; `port` defaults to 80). Set by the core.
pub const ENV_PROXIES: &str = "INTERLOCK_STATS_PROXIES";

/// Stats readings (and proxy status fetches) in flight at once.
const CONCURRENCY: usize = 8;
/// The `Host` header of a status request: no route can claim a name with `_`.
const STATUS_HOST: &str = "interlock_stats";
const NGINX_STATUS_PATH: &str = "/nginx_status";
const HAPROXY_STATUS_PATH: &str = "/haproxy?stats;csv";
/// The longest wait between two attempts to read the node's name at start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// What the agent needs from its node's engine: [`DockerClient`] in production.
pub trait NodeEngine: Send + Sync {
    /// The engine's name (`docker info`'s `Name`, the Swarm node's hostname).
    fn node_name(&self) -> impl Future<Output = Result<String, DockerError>> + Send;
    /// Every running container on this engine.
    fn running_containers(&self) -> impl Future<Output = Result<Vec<RunningContainer>, DockerError>> + Send;
    /// One reading of a container's counters (`None`: no reading, the container stopped).
    fn container_stats(&self, id: &str) -> impl Future<Output = Result<Option<ContainerStats>, DockerError>> + Send;
    /// Runs `argv` in the container and waits for it.
    fn exec(&self, container: &str, argv: &[String]) -> impl Future<Output = Result<ExecOutput, DockerError>> + Send;
}

impl NodeEngine for DockerClient {
    async fn node_name(&self) -> Result<String, DockerError> {
        Ok(self.engine().await?.name)
    }

    async fn running_containers(&self) -> Result<Vec<RunningContainer>, DockerError> {
        self.list_running_containers().await
    }

    async fn container_stats(&self, id: &str) -> Result<Option<ContainerStats>, DockerError> {
        DockerClient::container_stats(self, id).await
    }

    async fn exec(&self, container: &str, argv: &[String]) -> Result<ExecOutput, DockerError> {
        DockerClient::exec(self, container, argv).await
    }
}

/// The wait after the `failures`-th failed attempt to read the node's name: 1 s, doubling, up to
/// the interval (at least 1 s, at most [`MAX_START_BACKOFF`]).
pub fn start_backoff(failures: u32, interval: Duration) -> Duration {
    let cap = interval.clamp(Duration::from_secs(1), MAX_START_BACKOFF);
    Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(5)).min(cap)
}

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Carbon(#[from] CarbonError),
    #[error("{ENV_PROXIES}: {reason}")]
    Proxies { reason: String },
}

/// A proxy service whose tasks' status the agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The Swarm service (its containers' `com.docker.swarm.service.name`).
    pub service: String,
    pub kind: ProxyKind,
    /// The HTTP port inside the task (`TargetPort`).
    pub port: u16,
    /// HAProxy's stats credentials (`AdminUser`, `AdminPass`); nginx needs none.
    pub credentials: Option<(String, String)>,
}

/// What `interlock agent` is told through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// `STATS_CARBON_ADDRESS`, `STATS_PREFIX`, `STATS_IMAGE_NAME_FILTER`, `STATS_INTERVAL`.
    pub carbon: CarbonSettings,
    /// [`ENV_PROXIES`].
    pub proxies: Vec<ProxyTarget>,
}

impl AgentSettings {
    /// From Interlock 0.3's `STATS_*` variables ([`CarbonSettings::from_env`]) and
    /// [`ENV_PROXIES`] (unset or empty: no proxies).
    pub fn from_env() -> Result<Self, AgentError> {
        let carbon = CarbonSettings::from_env()?;
        let proxies = match std::env::var(ENV_PROXIES) {
            Ok(text) if !text.trim().is_empty() => parse_proxies(&text)?,
            _ => vec![],
        };
        Ok(Self { carbon, proxies })
    }
}

/// [`ENV_PROXIES`]'s JSON.
pub fn parse_proxies(text: &str) -> Result<Vec<ProxyTarget>, AgentError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        service: String,
        kind: String,
        #[serde(default = "default_port")]
        port: u16,
        user: Option<String>,
        password: Option<String>,
    }
    fn default_port() -> u16 {
        80
    }
    let entries: Vec<Entry> = serde_json::from_str(text)
        .map_err(|e| AgentError::Proxies { reason: format!("not a JSON list of proxies: {e}") })?;
    entries
        .into_iter()
        .map(|e| {
            let kind = match e.kind.to_ascii_lowercase().as_str() {
                "nginx" => ProxyKind::Nginx,
                "haproxy" => ProxyKind::Haproxy,
                other => {
                    return Err(AgentError::Proxies {
                        reason: format!("{}: kind {other:?} is not nginx or haproxy", e.service),
                    });
                }
            };
            if e.service.is_empty() || e.port == 0 {
                return Err(AgentError::Proxies { reason: "every proxy needs a service name and a port".to_owned() });
            }
            let credentials = match (e.user, e.password) {
                (Some(user), password) if !user.is_empty() => Some((user, password.unwrap_or_default())),
                _ => None,
            };
            Ok(ProxyTarget { service: e.service, kind, port: e.port, credentials })
        })
        .collect()
}

/// Runs until `shutdown` completes. `docker` is this node's engine (its socket mounted into the
/// agent's task): a [`DockerClient`].
pub async fn run<E: NodeEngine>(
    settings: AgentSettings,
    docker: E,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    settings.carbon.validate()?;
    let filter = settings.carbon.image_filter()?;
    let sink = CarbonSink::spawn(&settings.carbon.address)?;
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
        let readings: Vec<(&RunningContainer, Result<Option<ContainerStats>, DockerError>)> =
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
                Err(DockerError::NotFound { .. }) => debug!(container = %c.name, "stopped before its reading"),
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

/// 0.3's series for one container reading.
pub fn container_lines(prefix: &str, node: &str, container: &str, s: &ContainerStats, ts: u64) -> Vec<String> {
    let base = format!("{prefix}.containers.nodes.{}.{}", sanitize(node), sanitize(container));
    let n = &s.network;
    let counters: [(&str, u64); 15] = [
        ("cpu.totalUsage", s.cpu_total),
        ("cpu.usageInKernelmode", s.cpu_kernel),
        ("cpu.usageInUsermode", s.cpu_user),
        ("memory.usage", s.memory_usage),
        ("memory.maxUsage", s.memory_max_usage),
        ("memory.failcnt", s.memory_failcnt),
        ("memory.limit", s.memory_limit),
        ("network.rxBytes", n.rx_bytes),
        ("network.rxPackets", n.rx_packets),
        ("network.rxErrors", n.rx_errors),
        ("network.rxDropped", n.rx_dropped),
        ("network.txBytes", n.tx_bytes),
        ("network.txPackets", n.tx_packets),
        ("network.txErrors", n.tx_errors),
        ("network.txDropped", n.tx_dropped),
    ];
    let mut lines: Vec<String> = counters.iter().map(|(key, v)| line(&format!("{base}.{key}"), v, ts)).collect();
    lines.insert(7, line(&format!("{base}.memory.percent"), format_args!("{:.4}", s.memory_percent()), ts));
    lines
}

/// A proxy task's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReading {
    /// Requests served since the proxy (or its current worker set, for HAProxy) started.
    pub requests: u64,
    /// Client connections open now.
    pub active: u64,
    /// Further counters by name (nginx's `accepts`, `handled`, `reading`, `writing`, `waiting`).
    pub extra: Vec<(&'static str, u64)>,
}

/// The series for one proxy reading.
pub fn proxy_lines(prefix: &str, node: &str, container: &str, r: &ProxyReading, ts: u64) -> Vec<String> {
    let base = format!("{prefix}.proxies.{}.{}", sanitize(node), sanitize(container));
    let mut lines =
        vec![line(&format!("{base}.requests"), r.requests, ts), line(&format!("{base}.active"), r.active, ts)];
    lines.extend(r.extra.iter().map(|(key, v)| line(&format!("{base}.{key}"), v, ts)));
    lines
}

/// Fetches the proxy's status page from inside its container and parses it.
async fn read_proxy(docker: &impl NodeEngine, container: &str, proxy: &ProxyTarget) -> Result<ProxyReading, String> {
    let argv = fetch_command(proxy);
    let out = docker.exec(container, &argv).await.map_err(|e| e.to_string())?;
    let parsed = match proxy.kind {
        ProxyKind::Nginx => parse_stub_status(&out.output),
        ProxyKind::Haproxy => parse_haproxy_csv(&out.output),
    };
    parsed.ok_or_else(|| {
        let said: String = out.output.chars().take(300).collect();
        format!("exit code {}, not a {} status page: {said:?}", out.exit_code, proxy.kind)
    })
}

/// Fetches `http://127.0.0.1:PORT/PATH` inside a container with whatever it has: curl, wget, or
/// bash's `/dev/tcp` (then the answer's headers come too; the parsers skip them).
const FETCH_SCRIPT: &str = r#"port=$1 path=$2 host=$3 auth=$4
url="http://127.0.0.1:$port$path"
if command -v curl >/dev/null 2>&1; then
  if [ -n "$auth" ]; then exec curl -sS -m 5 -H "Host: $host" -H "Authorization: Basic $auth" "$url"; fi
  exec curl -sS -m 5 -H "Host: $host" "$url"
fi
if command -v wget >/dev/null 2>&1; then
  if [ -n "$auth" ]; then exec wget -q -T 5 -O - --header "Host: $host" --header "Authorization: Basic $auth" "$url"; fi
  exec wget -q -T 5 -O - --header "Host: $host" "$url"
fi
if command -v bash >/dev/null 2>&1; then
  exec bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7
a=""; if [ -n "$4" ]; then a="Authorization: Basic $4\r\n"; fi
printf "GET %s HTTP/1.0\r\nHost: %s\r\n%b\r\n" "$2" "$3" "$a" >&3
cat <&3' interlock-stats "$port" "$path" "$host" "$auth"
fi
echo "interlock-stats: no curl, wget or bash in this container" >&2
exit 127"#;

/// The exec that fetches a proxy's status page.
pub fn fetch_command(proxy: &ProxyTarget) -> Vec<String> {
    let path = match proxy.kind {
        ProxyKind::Nginx => NGINX_STATUS_PATH,
        ProxyKind::Haproxy => HAPROXY_STATUS_PATH,
    };
    let auth = proxy
        .credentials
        .as_ref()
        .map(|(user, password)| base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        .unwrap_or_default();
    ["/bin/sh", "-c", FETCH_SCRIPT, "interlock-stats"]
        .into_iter()
        .map(str::to_owned)
        .chain([proxy.port.to_string(), path.to_owned(), STATUS_HOST.to_owned(), auth])
        .collect()
}

/// nginx's `stub_status` page (headers before it, if any, are skipped):
///
/// ```text
/// Active connections: 2
/// server accepts handled requests
///  16 16 31
/// Reading: 0 Writing: 1 Waiting: 1
/// ```
pub fn parse_stub_status(text: &str) -> Option<ProxyReading> {
    let mut lines = text.lines().map(str::trim);
    let active = lines.by_ref().find_map(|l| l.strip_prefix("Active connections:"))?.trim().parse().ok()?;
    lines.by_ref().find(|l| l.starts_with("server accepts handled requests"))?;
    let counts: Vec<u64> = lines.next()?.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let [accepts, handled, requests] = counts[..] else { return None };
    let states: Vec<&str> = lines.next()?.split_whitespace().collect();
    let state = |name: &str| states.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse::<u64>().ok());
    Some(ProxyReading {
        requests,
        active,
        extra: vec![
            ("accepts", accepts),
            ("handled", handled),
            ("reading", state("Reading:")?),
            ("writing", state("Writing:")?),
            ("waiting", state("Waiting:")?),
        ],
    })
}

/// HAProxy's stats CSV (`# pxname,svname,...` then a row per proxy and server; headers before
/// it are skipped): requests and current sessions summed over the frontends.
pub fn parse_haproxy_csv(text: &str) -> Option<ProxyReading> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("# pxname,"));
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (svname, scur, req_tot) = (column("svname")?, column("scur")?, column("req_tot")?);
    let (mut requests, mut active, mut frontends) = (0u64, 0u64, 0);
    for row in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = row.split(',').collect();
        if fields.get(svname) != Some(&"FRONTEND") {
            continue;
        }
        frontends += 1;
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        requests += number(req_tot);
        active += number(scur);
    }
    (frontends > 0).then_some(ProxyReading { requests, active, extra: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_answer_becomes_0_3s_series() {
        let stats = crate::docker::ContainerStats {
            cpu_total: 123456789,
            cpu_kernel: 20000000,
            cpu_user: 90000000,
            memory_usage: 2097152,
            memory_max_usage: 4194304,
            memory_failcnt: 2,
            memory_limit: 8388608,
            network: crate::docker::NetworkTotals {
                rx_bytes: 1024,
                rx_packets: 11,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 506,
                tx_packets: 7,
                tx_errors: 4,
                tx_dropped: 3,
            },
        };
        let lines = container_lines("docker.stats", "app-00", "web.1.x2kq", &stats, 1_700_000_000);
        let b = "docker.stats.containers.nodes.app-00.web_1_x2kq";
        let want: Vec<String> = [
            "cpu.totalUsage 123456789",
            "cpu.usageInKernelmode 20000000",
            "cpu.usageInUsermode 90000000",
            "memory.usage 2097152",
            "memory.maxUsage 4194304",
            "memory.failcnt 2",
            "memory.limit 8388608",
            "memory.percent 25.0000",
            "network.rxBytes 1024",
            "network.rxPackets 11",
            "network.rxErrors 1",
            "network.rxDropped 2",
            "network.txBytes 506",
            "network.txPackets 7",
            "network.txErrors 4",
            "network.txDropped 3",
        ]
        .iter()
        .map(|kv| format!("{b}.{kv} 1700000000\n"))
        .collect();
        assert_eq!(lines, want);
        // A node name with odd characters is one component too.
        let lines = container_lines("p", "node.example com", "c", &stats, 1);
        assert!(lines[0].starts_with("p.containers.nodes.node_example_com.c.cpu.totalUsage "), "{}", lines[0]);
    }

    #[test]
    fn nginx_stub_status_is_read_with_or_without_headers() {
        let page =
            "Active connections: 2 \nserver accepts handled requests\n 16 16 31 \nReading: 0 Writing: 1 Waiting: 1 \n";
        let want = ProxyReading {
            requests: 31,
            active: 2,
            extra: vec![("accepts", 16), ("handled", 16), ("reading", 0), ("writing", 1), ("waiting", 1)],
        };
        assert_eq!(parse_stub_status(page), Some(want.clone()));
        let raw = format!("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n\r\n{page}");
        assert_eq!(parse_stub_status(&raw), Some(want.clone()));
        assert_eq!(parse_stub_status("<html>404 Not Found</html>"), None);
        assert_eq!(parse_stub_status("Active connections: 2\nserver accepts handled requests\n 1 2\n"), None);
        let lines = proxy_lines("s", "lb-00", "proxy.1.abc", &want, 9);
        assert_eq!(
            lines[..2],
            ["s.proxies.lb-00.proxy_1_abc.requests 31 9\n", "s.proxies.lb-00.proxy_1_abc.active 2 9\n"]
        );
        assert_eq!(lines[6], "s.proxies.lb-00.proxy_1_abc.waiting 1 9\n");
    }

    #[test]
    fn haproxy_csv_sums_the_frontends() {
        let csv = "HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\n\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,req_tot,status\n\
http-default,FRONTEND,,,3,5,2048,100,250,OPEN\n\
https-default,FRONTEND,,,1,2,2048,10,20,OPEN\n\
be_0,host_0_0,0,0,2,3,,50,,UP\n\
be_0,BACKEND,0,0,2,3,205,50,,UP\n";
        assert_eq!(parse_haproxy_csv(csv), Some(ProxyReading { requests: 270, active: 4, extra: vec![] }));
        assert_eq!(parse_haproxy_csv("401 Unauthorized"), None);
    }

    #[test]
    fn proxies_come_from_json() {
        let proxies = parse_proxies(
            r#"[{"service":"proxy-east","kind":"nginx","port":8080},
                {"service":"proxy-west","kind":"HAProxy","user":"admin","password":"s:cret"},
                {"service":"proxy-x","kind":"haproxy","user":""}]"#,
        )
        .unwrap();
        assert_eq!(
            proxies,
            [
                ProxyTarget { service: "proxy-east".into(), kind: ProxyKind::Nginx, port: 8080, credentials: None },
                ProxyTarget {
                    service: "proxy-west".into(),
                    kind: ProxyKind::Haproxy,
                    port: 80,
                    credentials: Some(("admin".into(), "s:cret".into()))
                },
                ProxyTarget { service: "proxy-x".into(), kind: ProxyKind::Haproxy, port: 80, credentials: None },
            ]
        );
        for bad in [
            r#"{"service":"x"}"#,
            r#"[{"service":"x","kind":"traefik"}]"#,
            r#"[{"service":"","kind":"nginx"}]"#,
            r#"[{"service":"x","kind":"nginx","prot":1}]"#,
        ] {
            assert!(matches!(parse_proxies(bad), Err(AgentError::Proxies { .. })), "{bad}");
        }
    }

    #[test]
    fn the_fetch_command_passes_port_path_host_and_credentials() {
        let p = ProxyTarget {
            service: "p".into(),
            kind: ProxyKind::Haproxy,
            port: 8080,
            credentials: Some(("admin".into(), "pw".into())),
        };
        let argv = fetch_command(&p);
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[3..], ["interlock-stats", "8080", "/haproxy?stats;csv", "interlock_stats", "YWRtaW46cHc="]);
        let n = ProxyTarget { kind: ProxyKind::Nginx, credentials: None, port: 80, ..p };
        assert_eq!(fetch_command(&n)[4..], ["80", "/nginx_status", "interlock_stats", ""]);
    }

    /// An engine that counts its calls: `name` / `list` fail when set; each container's
    /// reading and exec always fail.
    #[derive(Default)]
    struct FakeEngine {
        name_fails: bool,
        list_fails: bool,
        containers: Vec<RunningContainer>,
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

    fn refused(operation: &str) -> DockerError {
        DockerError::Unreachable {
            endpoint: "unix:///var/run/docker.sock".into(),
            reason: format!("{operation}: refused"),
        }
    }

    impl NodeEngine for FakeEngine {
        async fn node_name(&self) -> Result<String, DockerError> {
            self.calls.name.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.name_fails { Err(refused("info")) } else { Ok("node-1".into()) }
        }

        async fn running_containers(&self) -> Result<Vec<RunningContainer>, DockerError> {
            self.calls.list.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.list_fails { Err(refused("list")) } else { Ok(self.containers.clone()) }
        }

        async fn container_stats(&self, _id: &str) -> Result<Option<ContainerStats>, DockerError> {
            self.calls.stats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(refused("stats"))
        }

        async fn exec(&self, _container: &str, _argv: &[String]) -> Result<ExecOutput, DockerError> {
            self.calls.exec.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(refused("exec"))
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

    #[tokio::test(start_paused = true)]
    async fn failing_readings_are_tried_once_per_container_per_interval() {
        let container = |id: &str, service: Option<&str>| RunningContainer {
            id: id.into(),
            name: format!("{id}.1.x"),
            image: "app:1".into(),
            service: service.map(str::to_owned),
            labels: Default::default(),
        };
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

    /// The script itself, run by the system's sh against a local server, through each client
    /// the system has (skipped for a client it lacks).
    #[tokio::test]
    async fn the_fetch_script_gets_the_page_through_each_client() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                // The whole request (closing with unread data would reset the connection).
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen_tx.send(String::from_utf8_lossy(&request).into_owned());
                let body = "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 0 \n";
                let answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        // Credentials (HAProxy's) go as a Basic header; nginx's page ignores it.
        let p = ProxyTarget {
            service: "p".into(),
            kind: ProxyKind::Nginx,
            port,
            credentials: Some(("u".into(), "p".into())),
        };
        let argv = fetch_command(&p);
        for client in ["curl", "wget", "bash"] {
            if std::process::Command::new("sh")
                .args(["-c", &format!("command -v {client}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                eprintln!("no {client} here: skipped");
                continue;
            }
            // A PATH with only that client (and what the script itself uses).
            let dir = std::env::temp_dir().join(format!("interlock-fetch-{client}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for tool in [client, "cat"] {
                let found =
                    std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
                let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
                let _ = std::fs::remove_file(dir.join(tool));
                std::os::unix::fs::symlink(path, dir.join(tool)).unwrap();
            }
            let out =
                tokio::process::Command::new("/bin/sh").args(&argv[1..]).env("PATH", &dir).output().await.unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let reading = parse_stub_status(&text);
            assert_eq!(
                reading.map(|r| (r.requests, r.active)),
                Some((9, 1)),
                "{client}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let request = seen.recv().await.unwrap();
            assert!(request.starts_with("GET /nginx_status HTTP/1."), "{client}: {request}");
            assert!(request.to_ascii_lowercase().contains("\r\nhost: interlock_stats\r\n"), "{client}: {request}");
            assert!(request.to_ascii_lowercase().contains("\r\nauthorization: basic dtpw\r\n"), "{client}: {request}");
        }
        server.abort();
    }
}
