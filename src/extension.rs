//! `interlock extension`: the extension service's process. With `HitlessServiceUpdate` it runs
//! on every node (a global service) with that node's Docker socket, and keeps the proxy tasks
//! of its cluster on that node serving the core's current config without restarting them:
//!
//! ```text
//!  core ──GET /v1/extensions/NAME/config?after=HASH&generation=N──▶ extension (one per node)
//!        (long poll, writer replica only)                          │ for each proxy container here:
//!                                                                  │  write the files (archive API)
//!                                                                  │  check them      (exec: nginx -t / haproxy -c)
//!                                                                  │  reload          (kill: SIGHUP / SIGUSR2)
//!                                                                  │  record it       (/interlock/applied:
//!                                                                  │                   "HASH GENERATION")
//!  core ◀──POST /v1/extensions/NAME/reports────────────────────────┘
//! ```
//!
//! It acts on a new config at once, on a proxy container starting on its node (a restarted task
//! comes up on the last rolled-out config and catches up here), and every few seconds anyway.
//! A config the task's binary rejects is not applied: the files it had are written back, the
//! task keeps running its config, and the rejection is reported, so the core quarantines the
//! culprit. Serving never depends on this process: if it or the core is down, the proxies keep
//! their last config.
//!
//! Several core replicas may run; only the writer serves configs. A standby answers 503 naming
//! the writer's node and the client tries the core's next address (`tasks.NAME` lists every
//! replica), so a replica that is not the writer never hands out its (possibly stale) config.
//! Configs only go forward, by generation: the fetcher drops an answer that is not newer than
//! what it has, and a container is never given a config older than the one its applied file
//! records (it is reported as it is instead, so the core learns what it runs). Every request
//! costs the core a long poll, so the fetcher never loops hot: at least 100 ms between two
//! requests whatever the answers, and a doubling delay (to 10 s) after errors and after answers
//! that are not progress.
//!
//! Without `HitlessServiceUpdate` the extension only says where its core is and waits: the core
//! renders the configs and Swarm rolls them out.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reconcilers::desired::{Delivery, TOKEN_SECRET_TARGET};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::delivery::{TaskReport, WRITER_HEADER};
use crate::docker::{DockerClient, DockerError, LocalContainer};

/// How often the proxy containers on this node are looked at without a trigger.
const RESCAN: Duration = Duration::from_secs(5);
/// A config request waits this long at most (the core answers within `delivery::LONG_POLL`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between the starts of two config requests, whatever the core answers: a core
/// answering at once every time costs it at most ~10 requests a second per node.
const REQUEST_FLOOR: Duration = Duration::from_millis(100);
/// First delay after an error or an answer that is not progress; it doubles up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Container start events of the proxy service on this node.
type ContainerStarts = Pin<Box<dyn Stream<Item = Result<String, DockerError>> + Send>>;

/// Why the extension cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("{0} is not set: the core sets it on the extension service")]
    MissingSetting(&'static str),
    #[error("cannot read the extension's token at {path}: {source}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the core endpoint {0:?} is not HOST:PORT")]
    Endpoint(String),
}

/// A failed call to the core.
#[derive(Debug, thiserror::Error)]
enum CoreError {
    #[error("cannot reach the core at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the core replicas reached ({replicas}) are standbys; they say the writer is {writer}")]
    OnlyStandbys {
        /// The addresses that answered as standbys.
        replicas: String,
        /// Where they say the writer is.
        writer: String,
    },
    #[error(
        "the core refused the extension's token (a token of an earlier key? the service is updated with a new one)"
    )]
    Unauthorized,
    #[error("the core answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the core's answer is not a config: {0}")]
    Undecodable(#[from] serde_json::Error),
}

/// What the core tells the extension service through its environment and secret.
#[derive(Debug, Clone)]
pub struct Settings {
    pub extension: String,
    /// `HOST:PORT` (an `http://` prefix is accepted).
    pub endpoint: String,
    pub token: String,
    /// Whether the cluster uses hitless updates (else the extension only waits).
    pub hitless: bool,
}

impl Settings {
    /// From `INTERLOCK_EXTENSION_NAME`, `INTERLOCK_CORE_ENDPOINT`, `INTERLOCK_HITLESS` and the
    /// token secret mounted at `/run/secrets/interlock-extension-token`.
    pub fn from_env() -> Result<Self, ExtensionError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ExtensionError::MissingSetting(name));
        let hitless = std::env::var("INTERLOCK_HITLESS").is_ok_and(|v| v == "1");
        let token = if hitless {
            let path = format!("/run/secrets/{TOKEN_SECRET_TARGET}");
            std::fs::read_to_string(&path).map_err(|source| ExtensionError::Token { path, source })?.trim().to_owned()
        } else {
            String::new()
        };
        Ok(Self {
            extension: var("INTERLOCK_EXTENSION_NAME")?,
            endpoint: var("INTERLOCK_CORE_ENDPOINT")?,
            token,
            hitless,
        })
    }
}

/// Runs until `shutdown` completes. `docker` is the node's engine; hitless extensions need it.
pub async fn run(
    settings: Settings,
    docker: Option<DockerClient>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ExtensionError> {
    let Some(docker) = docker.filter(|_| settings.hitless) else {
        info!(extension = %settings.extension, core = %settings.endpoint, "extension up; the core renders this cluster's proxy config and Swarm rolls it out");
        shutdown.await;
        return Ok(());
    };
    let core = Arc::new(CoreClient::new(&settings)?);
    info!(extension = %settings.extension, core = %settings.endpoint, "extension up: keeping this node's proxy tasks on the core's config");
    let (tx, mut rx) = watch::channel::<Option<Arc<Delivery>>>(None);
    let fetcher = tokio::spawn(fetch_configs(core.clone(), tx));
    let mut applier = Applier {
        docker,
        core,
        applied: BTreeMap::new(),
        rejected: BTreeMap::new(),
        refused: BTreeMap::new(),
        reported: BTreeMap::new(),
        kept: None,
    };
    let mut starts: Option<ContainerStarts> = None;
    let mut watched = String::new();
    let mut rescan = tokio::time::interval(RESCAN);
    tokio::pin!(shutdown);
    loop {
        let current = rx.borrow().clone();
        if let Some(delivery) = &current
            && (starts.is_none() || watched != delivery.proxy_service)
        {
            watched.clone_from(&delivery.proxy_service);
            starts = Some(Box::pin(applier.docker.container_starts(&watched)));
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() { break }
                let current = rx.borrow().clone();
                if let Some(delivery) = current { applier.apply_all(&delivery).await }
            }
            started = next_start(&mut starts) => {
                if started.is_none() { starts = None }
                if let Some(delivery) = &current { applier.apply_all(delivery).await }
            }
            _ = rescan.tick() => {
                if let Some(delivery) = &current { applier.apply_all(delivery).await }
            }
            () = &mut shutdown => break,
        }
    }
    fetcher.abort();
    Ok(())
}

/// The next container start, or never while there is no subscription. `None`: it ended.
async fn next_start(starts: &mut Option<ContainerStarts>) -> Option<String> {
    match starts {
        Some(stream) => match stream.next().await {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                debug!("container events: {e}");
                None
            }
            None => None,
        },
        None => std::future::pending().await,
    }
}

/// Where configs come from: the core (`CoreClient`), or a fake in tests.
trait ConfigSource {
    /// A config newer than `after` (hash) at `generation`; `None` when there is none yet.
    fn config(&self, after: &str, generation: u64) -> impl Future<Output = Result<Option<Delivery>, CoreError>> + Send;
}

/// The newest config the fetcher accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Accepted {
    hash: String,
    generation: u64,
}

impl Accepted {
    /// Whether `delivery` moves forward from this. Generation 0 (a core that predates
    /// generations) is ordered by nothing, so it counts only while what is held is 0 too.
    fn is_progress(&self, delivery: &Delivery) -> bool {
        delivery.hash != self.hash && (self.generation == 0 || delivery.generation > self.generation)
    }
}

/// `BACKOFF_START` doubled `doublings` times, at most `BACKOFF_MAX`.
fn backoff_delay(doublings: u32) -> Duration {
    BACKOFF_START.saturating_mul(2u32.saturating_pow(doublings.min(6))).min(BACKOFF_MAX)
}

/// Long-polls `source` for configs newer than the last, forever, sending each one forward into
/// `tx`. Paced: `REQUEST_FLOOR` between requests, backoff after errors and non-progress.
async fn fetch_configs<S: ConfigSource>(source: Arc<S>, tx: watch::Sender<Option<Arc<Delivery>>>) {
    let mut have = Accepted::default();
    let mut failures: u32 = 0;
    let mut not_progress: u32 = 0;
    loop {
        let asked_at = tokio::time::Instant::now();
        let delay = match source.config(&have.hash, have.generation).await {
            Ok(Some(delivery)) if have.is_progress(&delivery) => {
                failures = 0;
                not_progress = 0;
                let generation = delivery.generation;
                info!(hash = %short(&delivery.hash), generation, "new proxy config from the core");
                have = Accepted { hash: delivery.hash.clone(), generation: delivery.generation };
                tx.send_replace(Some(Arc::new(delivery)));
                Duration::ZERO
            }
            Ok(Some(delivery)) => {
                failures = 0;
                not_progress += 1;
                debug!(
                    hash = %short(&delivery.hash),
                    generation = delivery.generation,
                    have_hash = %short(&have.hash),
                    have_generation = have.generation,
                    "dropped a config from the core that is not newer than the one held"
                );
                backoff_delay(not_progress - 1)
            }
            Ok(None) => {
                failures = 0;
                Duration::ZERO
            }
            Err(e) => {
                failures += 1;
                // Quiet while the core restarts; say so when it lasts.
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(failures, "{e}");
                }
                backoff_delay(failures)
            }
        };
        tokio::time::sleep_until((asked_at + REQUEST_FLOOR).max(tokio::time::Instant::now() + delay)).await;
    }
}

/// What a proxy container runs, as its applied file records it (`HASH` or `HASH GENERATION`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RunningConfig {
    /// "" when the file is missing: nothing known.
    hash: String,
    /// 0: the config the task was started with, or unknown.
    generation: u64,
}

impl RunningConfig {
    /// Parses the applied file; a missing or unreadable generation is 0.
    fn parse(text: &str) -> Self {
        let mut words = text.split_whitespace();
        let hash = words.next().unwrap_or_default().to_owned();
        let generation = words.next().and_then(|g| g.parse().ok()).unwrap_or(0);
        Self { hash, generation }
    }

    /// The applied file's content once `delivery` runs.
    fn marker(delivery: &Delivery) -> String {
        format!("{} {}\n", delivery.hash, delivery.generation)
    }
}

/// What to do with a delivery for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// The container runs it already.
    AlreadyApplied,
    /// It is older than what the container runs (a stale replica's answer): write nothing.
    Refuse,
    Apply,
}

/// Configs only go forward: equal generations above 0 with different hashes cannot both be the
/// cluster's, so the one running wins; generation 0 is "unknown" and never outranks anything.
fn decide(running: &RunningConfig, delivery: &Delivery) -> Decision {
    if delivery.hash == running.hash {
        Decision::AlreadyApplied
    } else if delivery.generation < running.generation
        || (delivery.generation == running.generation && running.generation > 0)
    {
        Decision::Refuse
    } else {
        Decision::Apply
    }
}

/// Applies configs to this node's proxy containers, remembering what each runs.
struct Applier {
    docker: DockerClient,
    core: Arc<CoreClient>,
    /// Container → what it runs.
    applied: BTreeMap<String, RunningConfig>,
    /// Container → the hash its binary rejected last (not tried on it again).
    rejected: BTreeMap<String, String>,
    /// Container → the hash last refused as older than what it runs (warned about once).
    refused: BTreeMap<String, String>,
    /// Container → what was last reported to the core for it (`hash|generation|rejected`).
    reported: BTreeMap<String, String>,
    /// The last config this process applied anywhere: written back into a container whose
    /// binary rejects a newer one, so the files on disk stay what the task runs.
    kept: Option<Arc<Delivery>>,
}

impl Applier {
    async fn apply_all(&mut self, delivery: &Arc<Delivery>) {
        let containers = match self.docker.running_containers(&delivery.proxy_service).await {
            Ok(containers) => containers,
            Err(e) => {
                warn!("cannot list this node's proxy containers: {e}");
                return;
            }
        };
        let here: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.applied.retain(|id, _| here.contains(id.as_str()));
        self.rejected.retain(|id, _| here.contains(id.as_str()));
        self.refused.retain(|id, _| here.contains(id.as_str()));
        self.reported.retain(|id, _| here.contains(id.as_str()));
        let mut any_applied = false;
        for container in &containers {
            let report = self.apply(container, delivery).await;
            any_applied |= report.as_ref().is_some_and(|r| r.hash == delivery.hash && r.error.is_none());
            let said =
                |r: &TaskReport| format!("{}|{}|{}", r.hash, r.generation, r.rejected.as_deref().unwrap_or_default());
            if let Some(report) = report
                && self.reported.get(&container.id) != Some(&said(&report))
            {
                match self.core.report(&report).await {
                    Ok(()) => {
                        self.reported.insert(container.id.clone(), said(&report));
                    }
                    Err(e) => warn!("cannot report to the core: {e}"),
                }
            }
        }
        if any_applied {
            self.kept = Some(delivery.clone());
        }
    }

    /// Brings one container to `delivery`; the report to send, if any.
    async fn apply(&mut self, container: &LocalContainer, delivery: &Delivery) -> Option<TaskReport> {
        let started = Instant::now();
        let id = container.id.as_str();
        let running = match self.applied.get(id) {
            Some(running) => running.clone(),
            // Unknown until the file can be read: applying blind could take the task backwards.
            None => match self.read_applied(id, &delivery.applied_file).await {
                Ok(running) => running,
                Err(e) => {
                    debug!("cannot read {} in {}: {e}", delivery.applied_file, short(id));
                    return None;
                }
            },
        };
        let report = |running: &RunningConfig, rejected: Option<String>, error: Option<String>| TaskReport {
            task: container.task_id.clone().unwrap_or_else(|| id.to_owned()),
            node: container.node_id.clone().unwrap_or_default(),
            container: id.to_owned(),
            hash: running.hash.clone(),
            generation: running.generation,
            rejected,
            error,
            applied_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        match decide(&running, delivery) {
            Decision::AlreadyApplied => {
                // Same files: it runs this generation too (a task started on the rolled-out
                // config records no generation), and an older one must not outrank it.
                let running =
                    RunningConfig { hash: running.hash, generation: running.generation.max(delivery.generation) };
                self.applied.insert(id.to_owned(), running.clone());
                return Some(report(&running, None, None));
            }
            Decision::Refuse => {
                if self.refused.get(id) != Some(&delivery.hash) {
                    warn!(
                        container = %short(id),
                        hash = %short(&delivery.hash),
                        generation = delivery.generation,
                        running_hash = %short(&running.hash),
                        running_generation = running.generation,
                        "not applied: older than the config the task runs"
                    );
                    self.refused.insert(id.to_owned(), delivery.hash.clone());
                }
                self.applied.insert(id.to_owned(), running.clone());
                return Some(report(&running, None, None));
            }
            Decision::Apply => {}
        }
        if self.rejected.get(id) == Some(&delivery.hash) {
            return None;
        }
        match self.write_check_reload(id, delivery, &running.hash).await {
            Ok(()) => {
                info!(container = %short(id), hash = %short(&delivery.hash), generation = delivery.generation, took_ms = started.elapsed().as_millis(), "proxy reloaded in place");
                let now = RunningConfig { hash: delivery.hash.clone(), generation: delivery.generation };
                self.applied.insert(id.to_owned(), now.clone());
                self.rejected.remove(id);
                Some(report(&now, None, None))
            }
            Err(error) => {
                warn!(container = %short(id), hash = %short(&delivery.hash), "not applied: {error}");
                // Do not try this config on this container again; the next config is tried.
                self.applied.insert(id.to_owned(), running.clone());
                self.rejected.insert(id.to_owned(), delivery.hash.clone());
                Some(report(&running, Some(delivery.hash.clone()), Some(error)))
            }
        }
    }

    /// What the container's start command or an earlier reload recorded (nothing known if the
    /// file is missing); an error when Docker cannot say.
    async fn read_applied(&self, container: &str, path: &str) -> Result<RunningConfig, DockerError> {
        let out = self.docker.exec(container, &["cat".to_owned(), path.to_owned()]).await?;
        Ok(if out.exit_code == 0 { RunningConfig::parse(&out.output) } else { RunningConfig::default() })
    }

    /// `running`: the hash the container runs now, whose files are written back if `delivery`'s
    /// are rejected (when this process has them).
    async fn write_check_reload(&self, container: &str, delivery: &Delivery, running: &str) -> Result<(), String> {
        self.write(container, delivery).await?;
        let checked = self.docker.exec(container, &delivery.check).await.map_err(|e| e.to_string())?;
        if checked.exit_code != 0 {
            let reason = format!("{} rejects it: {}", delivery.check.join(" "), checked.output.trim());
            // Put back what the task runs, when this process has it.
            if let Some(kept) = self.kept.as_ref().filter(|k| k.hash == running)
                && let Err(e) = self.write(container, kept).await
            {
                warn!("cannot write the previous config back: {e}");
            }
            return Err(reason);
        }
        self.docker.signal(container, &delivery.reload_signal).await.map_err(|e| e.to_string())?;
        let marker = vec![(delivery.applied_file.clone(), RunningConfig::marker(delivery).into_bytes())];
        self.docker.write_files(container, &marker).await.map_err(|e| e.to_string())
    }

    async fn write(&self, container: &str, delivery: &Delivery) -> Result<(), String> {
        if !delivery.clear_dirs.is_empty() {
            let mut rm = vec!["rm".to_owned(), "-rf".to_owned()];
            rm.extend(delivery.clear_dirs.iter().cloned());
            self.docker.exec(container, &rm).await.map_err(|e| e.to_string())?;
        }
        let files: Vec<(String, Vec<u8>)> =
            delivery.files.iter().map(|f| (f.path.clone(), f.content.clone().into_bytes())).collect();
        self.docker.write_files(container, &files).await.map_err(|e| e.to_string())
    }
}

/// One address's answer to a call.
enum Answer {
    /// From the writer (or a core that predates replicas): the status and body.
    Served(StatusCode, Bytes),
    /// A standby replica, naming the writer's node ("" when it does not know).
    Standby { writer: String },
}

/// The core's API, as the extension calls it.
struct CoreClient {
    extension: String,
    endpoint: String,
    host: String,
    port: u16,
    token: String,
    /// The address that last answered as the writer: tried first, so a call does not usually
    /// cost a standby a request too.
    writer: Mutex<Option<SocketAddr>>,
}

impl CoreClient {
    fn new(settings: &Settings) -> Result<Self, ExtensionError> {
        let endpoint = settings.endpoint.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = endpoint
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| ExtensionError::Endpoint(settings.endpoint.clone()))?;
        Ok(Self {
            extension: settings.extension.clone(),
            endpoint: endpoint.to_owned(),
            host,
            port,
            token: settings.token.clone(),
            writer: Mutex::new(None),
        })
    }

    async fn report(&self, report: &TaskReport) -> Result<(), CoreError> {
        let path = format!("/v1/extensions/{}/reports", self.extension);
        let body = Bytes::from(serde_json::to_vec(report)?);
        match self.call(Method::POST, &path, body).await? {
            (status, _) if status.is_success() => Ok(()),
            (StatusCode::UNAUTHORIZED, _) => Err(CoreError::Unauthorized),
            (status, body) => Err(CoreError::Status { status, body: String::from_utf8_lossy(&body).into_owned() }),
        }
    }

    /// Where the core answers. A bare service name is tried as `tasks.NAME` first: Docker's DNS
    /// gives the tasks' own addresses (every replica's), which work without the service VIP's
    /// IPVS (a VIP-mode core, as the walk-through creates it, and a dnsrr one alike); then as
    /// the name itself. The last writer comes first.
    async fn addresses(&self) -> Vec<SocketAddr> {
        let bare_name = !self.host.contains('.') && self.host.parse::<std::net::IpAddr>().is_err();
        let mut names = Vec::new();
        if bare_name {
            names.push(format!("tasks.{}", self.host));
        }
        names.push(self.host.clone());
        let mut out = Vec::new();
        for name in names {
            if let Ok(found) = tokio::net::lookup_host((name.as_str(), self.port)).await {
                out.extend(found.filter(|a| !out.contains(a)).collect::<Vec<_>>());
            }
        }
        writer_first(&mut out, *self.writer.lock().expect("writer lock"));
        out
    }

    /// The writer's answer: standbys are passed over for the next address.
    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), CoreError> {
        let addresses = self.addresses().await;
        self.call_first_writer(&addresses, method, path, body).await
    }

    async fn call_first_writer(
        &self,
        addresses: &[SocketAddr],
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), CoreError> {
        let mut last = "the name does not resolve".to_owned();
        let mut standbys: Vec<(SocketAddr, String)> = Vec::new();
        for &addr in addresses {
            match self.call_at(addr, method.clone(), path, body.clone()).await {
                Ok(Answer::Served(status, body)) => {
                    *self.writer.lock().expect("writer lock") = Some(addr);
                    return Ok((status, body));
                }
                Ok(Answer::Standby { writer }) => {
                    debug!(%addr, writer, "a standby core replica answered; trying the next address");
                    standbys.push((addr, writer));
                }
                Err(CallError::Connect(reason)) => last = format!("{addr}: {reason}"),
                Err(CallError::Exchange(reason)) => return Err(self.unreachable(format!("{addr}: {reason}"))),
            }
        }
        if standbys.is_empty() {
            return Err(self.unreachable(last));
        }
        let replicas = standbys.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>().join(", ");
        let named: BTreeSet<&str> = standbys.iter().map(|(_, w)| w.as_str()).filter(|w| !w.is_empty()).collect();
        let writer = if named.is_empty() {
            "not known to them (no writer elected yet?)".to_owned()
        } else {
            format!("on node {}", named.into_iter().collect::<Vec<_>>().join(" or "))
        };
        Err(CoreError::OnlyStandbys { replicas, writer })
    }

    fn unreachable(&self, reason: String) -> CoreError {
        CoreError::Unreachable { endpoint: self.endpoint.clone(), reason }
    }

    /// One request to one address.
    async fn call_at(&self, addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Result<Answer, CallError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(CallError::Connect(e.to_string())),
            Err(_) => return Err(CallError::Connect(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.as_str())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::Exchange(e.to_string()))?;
        let exchange = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let writer =
                response.headers().get(WRITER_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
            if status == StatusCode::SERVICE_UNAVAILABLE
                && let Some(writer) = writer
            {
                return Ok(Answer::Standby { writer });
            }
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>(Answer::Served(status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer.map_err(CallError::Exchange),
            Err(_) => Err(CallError::Exchange(format!("no answer in {} s", REQUEST_TIMEOUT.as_secs()))),
        }
    }
}

/// Why one address gave no answer.
enum CallError {
    /// Nothing listens there (the next address is tried).
    Connect(String),
    /// It took the request and failed it.
    Exchange(String),
}

impl ConfigSource for CoreClient {
    /// The served config if newer than `after` at `generation`; `None` when the core has
    /// nothing newer.
    async fn config(&self, after: &str, generation: u64) -> Result<Option<Delivery>, CoreError> {
        let path = format!("/v1/extensions/{}/config?after={after}&generation={generation}", self.extension);
        let (status, body) = self.call(Method::GET, &path, Bytes::new()).await?;
        match status {
            StatusCode::OK => Ok(Some(serde_json::from_slice(&body)?)),
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::UNAUTHORIZED => Err(CoreError::Unauthorized),
            status => Err(CoreError::Status { status, body: String::from_utf8_lossy(&body).into_owned() }),
        }
    }
}

/// Moves `writer` to the front of `addresses`, the others keeping their order.
fn writer_first(addresses: &mut [SocketAddr], writer: Option<SocketAddr>) {
    if let Some(at) = writer.and_then(|w| addresses.iter().position(|a| *a == w)) {
        addresses[..=at].rotate_right(1);
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn settings(endpoint: &str) -> Settings {
        Settings { extension: "us-east".into(), endpoint: endpoint.into(), token: "t".into(), hitless: true }
    }

    fn delivery(hash: &str, generation: u64) -> Delivery {
        Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: hash.into(),
            generation,
            files: vec![],
            clear_dirs: vec![],
            check: vec!["true".into()],
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
        }
    }

    #[test]
    fn endpoints_are_host_and_port() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("interlock", 8080));
        let core = CoreClient::new(&settings("http://10.0.0.2:9090/")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("10.0.0.2", 9090));
        assert!(CoreClient::new(&settings("interlock")).is_err());
    }

    #[test]
    fn the_applied_file_is_a_hash_and_maybe_a_generation() {
        let parse = |text: &str| {
            let r = RunningConfig::parse(text);
            (r.hash, r.generation)
        };
        assert_eq!(parse("abc\n"), ("abc".to_owned(), 0), "as the start command writes it");
        assert_eq!(parse("abc 7\n"), ("abc".to_owned(), 7));
        assert_eq!(parse("  abc\t7  \n"), ("abc".to_owned(), 7));
        assert_eq!(parse(""), (String::new(), 0));
        assert_eq!(parse("abc x"), ("abc".to_owned(), 0), "an unreadable generation is unknown");
        let written = RunningConfig::marker(&delivery("def", 12));
        assert_eq!(written, "def 12\n");
        assert_eq!(parse(&written), ("def".to_owned(), 12));
    }

    #[test]
    fn a_container_only_takes_configs_newer_than_the_one_it_runs() {
        let running = |hash: &str, generation| RunningConfig { hash: hash.into(), generation };
        let decide = |r: RunningConfig, d: Delivery| decide(&r, &d);
        assert_eq!(decide(running("a", 5), delivery("a", 5)), Decision::AlreadyApplied);
        assert_eq!(decide(running("a", 0), delivery("a", 5)), Decision::AlreadyApplied, "started on it");
        assert_eq!(decide(running("a", 5), delivery("b", 6)), Decision::Apply);
        assert_eq!(decide(running("a", 5), delivery("b", 3)), Decision::Refuse, "older");
        assert_eq!(decide(running("a", 5), delivery("b", 5)), Decision::Refuse, "same generation, other files");
        assert_eq!(decide(running("a", 5), delivery("b", 0)), Decision::Refuse, "an old core's config");
        assert_eq!(decide(running("a", 0), delivery("b", 0)), Decision::Apply, "an old core and an old task");
        assert_eq!(decide(running("a", 0), delivery("b", 1)), Decision::Apply);
        assert_eq!(decide(running("", 0), delivery("b", 1)), Decision::Apply, "nothing recorded");
    }

    #[test]
    fn the_fetcher_accepts_only_progress() {
        let have = |hash: &str, generation| Accepted { hash: hash.into(), generation };
        assert!(have("", 0).is_progress(&delivery("a", 1)));
        assert!(have("", 0).is_progress(&delivery("a", 0)), "an old core");
        assert!(have("a", 0).is_progress(&delivery("b", 0)), "an old core's next config");
        assert!(!have("a", 0).is_progress(&delivery("a", 0)));
        assert!(!have("a", 0).is_progress(&delivery("a", 4)), "same files");
        assert!(have("a", 4).is_progress(&delivery("b", 5)));
        assert!(!have("a", 4).is_progress(&delivery("b", 4)));
        assert!(!have("a", 4).is_progress(&delivery("b", 3)));
        assert!(!have("a", 4).is_progress(&delivery("b", 0)), "an old core after a new one");
    }

    #[test]
    fn the_backoff_doubles_to_ten_seconds() {
        let delays: Vec<u64> = (0..9).map(|n| backoff_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    }

    #[test]
    fn the_last_writer_is_tried_first() {
        let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:8080".parse().unwrap();
        let mut addresses = [a, b, c];
        writer_first(&mut addresses, Some(c));
        assert_eq!(addresses, [c, a, b]);
        writer_first(&mut addresses, Some("10.0.0.9:8080".parse().unwrap()));
        assert_eq!(addresses, [c, a, b], "a writer no longer resolved changes nothing");
        writer_first(&mut addresses, None);
        assert_eq!(addresses, [c, a, b]);
    }

    /// A core that answers from a script, counting the requests.
    struct FakeCore {
        requests: AtomicUsize,
        /// Request number (from 0) → the answer.
        answer: Box<dyn Fn(usize) -> Result<Option<Delivery>, CoreError> + Send + Sync>,
    }

    impl FakeCore {
        fn new(answer: impl Fn(usize) -> Result<Option<Delivery>, CoreError> + Send + Sync + 'static) -> Arc<Self> {
            Arc::new(Self { requests: AtomicUsize::new(0), answer: Box::new(answer) })
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    impl ConfigSource for FakeCore {
        async fn config(&self, _after: &str, _generation: u64) -> Result<Option<Delivery>, CoreError> {
            let n = self.requests.fetch_add(1, Ordering::SeqCst);
            (self.answer)(n)
        }
    }

    /// Runs the fetcher against `core` for 30 s of (paused) time; every config it passed on.
    async fn fetch_for_30_s(core: &Arc<FakeCore>) -> Vec<(String, u64)> {
        let (tx, mut rx) = watch::channel::<Option<Arc<Delivery>>>(None);
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                if let Some(d) = rx.borrow_and_update().clone() {
                    seen.push((d.hash.clone(), d.generation));
                }
            }
            seen
        });
        let fetcher = tokio::spawn(fetch_configs(core.clone(), tx));
        tokio::time::sleep(Duration::from_secs(30)).await;
        fetcher.abort();
        let _ = fetcher.await;
        seen.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_core_repeating_the_same_config_at_once_is_asked_less_and_less() {
        let core = FakeCore::new(|_| Ok(Some(delivery("a", 1))));
        let seen = fetch_for_30_s(&core).await;
        assert_eq!(seen, [("a".to_owned(), 1)], "passed on once");
        assert!(core.requests() <= 40, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_core_is_asked_less_and_less() {
        let core = FakeCore::new(|_| {
            Err(CoreError::Unreachable { endpoint: "interlock:8080".into(), reason: "refused".into() })
        });
        let seen = fetch_for_30_s(&core).await;
        assert!(seen.is_empty());
        assert!(core.requests() <= 15, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_generation_is_never_passed_on() {
        let core = FakeCore::new(|n| Ok(Some(if n == 0 { delivery("new", 5) } else { delivery("old", 3) })));
        let seen = fetch_for_30_s(&core).await;
        assert_eq!(seen, [("new".to_owned(), 5)]);
        assert!(core.requests() <= 40, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn a_core_with_a_new_generation_every_time_is_asked_at_most_ten_times_a_second() {
        let core = FakeCore::new(|n| Ok(Some(delivery(&format!("h{n}"), n as u64 + 1))));
        let seen = fetch_for_30_s(&core).await;
        assert!(core.requests() <= 301, "{} requests in 30 s", core.requests());
        assert!(core.requests() >= 250, "progress is not backed off: {} requests", core.requests());
        assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "generations only grow");
    }

    #[tokio::test(start_paused = true)]
    async fn long_polls_that_end_empty_are_repeated_at_once() {
        let core = FakeCore::new(|n| Ok((n == 0).then(|| delivery("a", 1))));
        fetch_for_30_s(&core).await;
        assert!((250..=301).contains(&core.requests()), "{} requests in 30 s", core.requests());
    }

    /// Serves one fixed HTTP answer to every connection on loopback.
    async fn fixed_answer(response: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    const STANDBY: &str = "HTTP/1.1 503 Service Unavailable\r\nx-interlock-writer: manager-2\r\n\
                           content-length: 8\r\nconnection: close\r\n\r\nstandby\n";
    const STANDBY_NO_WRITER: &str =
        "HTTP/1.1 503 Service Unavailable\r\nx-interlock-writer: \r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const WRITER: &str = "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";

    #[tokio::test]
    async fn standby_replicas_are_passed_over_for_the_writer() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        let (standby, writer) = (fixed_answer(STANDBY).await, fixed_answer(WRITER).await);
        let (status, _) = core
            .call_first_writer(&[standby, writer], Method::GET, "/v1/extensions/us-east/config", Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(*core.writer.lock().unwrap(), Some(writer), "remembered, to be tried first");

        let unknown = fixed_answer(STANDBY_NO_WRITER).await;
        let err = core
            .call_first_writer(&[standby, unknown], Method::GET, "/v1/extensions/us-east/config", Bytes::new())
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, CoreError::OnlyStandbys { .. }), "{message}");
        assert!(message.contains("standbys") && message.contains("on node manager-2"), "{message}");
        assert!(message.contains(&standby.to_string()) && message.contains(&unknown.to_string()), "{message}");

        let err = core.call_first_writer(&[unknown], Method::GET, "/", Bytes::new()).await.unwrap_err();
        assert!(err.to_string().contains("not known"), "{err}");

        // A 503 without the header is the core's own answer, returned as is.
        let busy = fixed_answer(UNAVAILABLE).await;
        let (status, body) = core.call_first_writer(&[busy, writer], Method::GET, "/", Bytes::new()).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::SERVICE_UNAVAILABLE, &b"busy\n"[..]));
    }

    /// The extension's client against the core's real server (`status::serve`), on loopback.
    #[tokio::test]
    async fn the_extension_fetches_its_config_and_reports_with_its_token() {
        let deliveries = Arc::new(crate::delivery::Deliveries::default());
        deliveries.set_key("key".into());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = tokio::spawn(crate::status::serve(addr.to_string(), Default::default(), deliveries.clone()));
        let token = reconcilers::token::extension_token("key", "us-east");
        let core = CoreClient::new(&Settings { token: token.clone(), ..settings(&addr.to_string()) }).unwrap();
        let delivery = delivery("abc", 1);
        // A replica that has not decided yet is a standby knowing no writer.
        let mut answer = core.config("", 0).await;
        for _ in 0..50 {
            if !matches!(answer, Err(CoreError::Unreachable { .. })) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer = core.config("", 0).await;
        }
        assert!(
            matches!(&answer, Err(CoreError::OnlyStandbys { writer, .. }) if writer.contains("not known")),
            "{answer:?}"
        );
        deliveries.set_serving(crate::delivery::Serving::Writer);
        let mut got = None;
        for _ in 0..50 {
            deliveries.publish(&delivery);
            match core.config("", 0).await {
                Ok(d) => {
                    got = d;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert_eq!(got, Some(delivery));
        let report = TaskReport {
            task: "t1".into(),
            node: "n".into(),
            container: "c".into(),
            hash: "abc".into(),
            generation: 1,
            rejected: None,
            error: None,
            applied_at: 1,
            took_ms: 2,
        };
        core.report(&report).await.unwrap();
        assert_eq!(deliveries.tasks("us-east")["t1"], report);
        let other =
            CoreClient::new(&Settings { extension: "us-west".into(), token, ..settings(&addr.to_string()) }).unwrap();
        assert!(
            matches!(other.config("", 0).await, Err(CoreError::Unauthorized)),
            "a token opens its own cluster only"
        );
        server.abort();
    }
}
