//! `interlock extension`: the extension service's process. With `HitlessServiceUpdate` it runs
//! on every node (a global service) with that node's Docker socket, and keeps the proxy tasks
//! of its cluster on that node serving the core's current config without restarting them:
//!
//! ```text
//!  core ──GET /v1/extensions/NAME/config (long poll)──▶ extension (one per node)
//!                                                        │ for each proxy container here:
//!                                                        │  write the files     (archive API)
//!                                                        │  check them          (exec: nginx -t / haproxy -c)
//!                                                        │  reload              (kill: SIGHUP / SIGUSR2)
//!  core ◀──POST /v1/extensions/NAME/reports──────────────┘  record the hash    (/interlock/applied)
//! ```
//!
//! It acts on a new config at once, on a proxy container starting on its node (a restarted task
//! comes up on the last rolled-out config and catches up here), and every few seconds anyway.
//! A config the task's binary rejects is not applied: the files it had are written back, the
//! task keeps running its config, and the rejection is reported, so the core quarantines the
//! culprit. Serving never depends on this process: if it or the core is down, the proxies keep
//! their last config.
//!
//! Without `HitlessServiceUpdate` the extension only says where its core is and waits: the core
//! renders the configs and Swarm rolls them out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reconcilers::desired::{Delivery, TOKEN_SECRET_TARGET};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::delivery::TaskReport;
use crate::docker::{DockerClient, DockerError, LocalContainer};

/// How often the proxy containers on this node are looked at without a trigger.
const RESCAN: Duration = Duration::from_secs(5);
/// A config request waits this long at most (the core answers within `delivery::LONG_POLL`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Long-polls the core for configs newer than the last, forever.
async fn fetch_configs(core: Arc<CoreClient>, tx: watch::Sender<Option<Arc<Delivery>>>) {
    let mut have = String::new();
    let mut failures: u32 = 0;
    loop {
        match core.config(&have).await {
            Ok(Some(delivery)) => {
                failures = 0;
                info!(hash = %short(&delivery.hash), "new proxy config from the core");
                have.clone_from(&delivery.hash);
                tx.send_replace(Some(Arc::new(delivery)));
            }
            Ok(None) => failures = 0,
            Err(e) => {
                failures += 1;
                // Quiet while the core restarts; say so when it lasts.
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(failures, "{e}");
                }
                let delay = Duration::from_millis(250).saturating_mul(2u32.saturating_pow(failures.min(6)));
                tokio::time::sleep(delay.min(Duration::from_secs(10))).await;
            }
        }
    }
}

/// Applies configs to this node's proxy containers, remembering what each runs.
struct Applier {
    docker: DockerClient,
    core: Arc<CoreClient>,
    /// Container → the hash it runs.
    applied: BTreeMap<String, String>,
    /// Container → the hash its binary rejected last (not tried on it again).
    rejected: BTreeMap<String, String>,
    /// Container → what was last reported to the core for it (`hash`, `hash|rejected`).
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
        self.reported.retain(|id, _| here.contains(id.as_str()));
        let mut any_applied = false;
        for container in &containers {
            let report = self.apply(container, delivery).await;
            any_applied |= report.as_ref().is_some_and(|r| r.hash == delivery.hash && r.error.is_none());
            let said = |r: &TaskReport| format!("{}|{}", r.hash, r.rejected.as_deref().unwrap_or_default());
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
            Some(hash) => hash.clone(),
            None => self.read_applied(id, &delivery.applied_file).await,
        };
        let report = |hash: &str, rejected: Option<String>, error: Option<String>| TaskReport {
            task: container.task_id.clone().unwrap_or_else(|| id.to_owned()),
            node: container.node_id.clone().unwrap_or_default(),
            container: id.to_owned(),
            hash: hash.to_owned(),
            rejected,
            error,
            applied_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        if running == delivery.hash {
            self.applied.insert(id.to_owned(), running.clone());
            return Some(report(&running, None, None));
        }
        if self.rejected.get(id) == Some(&delivery.hash) {
            return None;
        }
        match self.write_check_reload(id, delivery, &running).await {
            Ok(()) => {
                info!(container = %short(id), hash = %short(&delivery.hash), took_ms = started.elapsed().as_millis(), "proxy reloaded in place");
                self.applied.insert(id.to_owned(), delivery.hash.clone());
                self.rejected.remove(id);
                Some(report(&delivery.hash, None, None))
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

    /// The hash the container's start command or an earlier reload recorded ("" if none).
    async fn read_applied(&self, container: &str, path: &str) -> String {
        match self.docker.exec(container, &["cat".to_owned(), path.to_owned()]).await {
            Ok(out) if out.exit_code == 0 => out.output.trim().to_owned(),
            Ok(_) => String::new(),
            Err(e) => {
                debug!("cannot read {path} in {container}: {e}");
                String::new()
            }
        }
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
        let marker = vec![(delivery.applied_file.clone(), format!("{}\n", delivery.hash).into_bytes())];
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

/// The core's API, as the extension calls it.
struct CoreClient {
    extension: String,
    endpoint: String,
    host: String,
    port: u16,
    token: String,
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
        })
    }

    /// The served config if newer than `after`; `None` when the core has nothing newer.
    async fn config(&self, after: &str) -> Result<Option<Delivery>, CoreError> {
        let path = format!("/v1/extensions/{}/config?after={after}", self.extension);
        let (status, body) = self.call(Method::GET, &path, Bytes::new()).await?;
        match status {
            StatusCode::OK => Ok(Some(serde_json::from_slice(&body)?)),
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::UNAUTHORIZED => Err(CoreError::Unauthorized),
            status => Err(CoreError::Status { status, body: String::from_utf8_lossy(&body).into_owned() }),
        }
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
    /// gives the tasks' own addresses, which work without the service VIP's IPVS (a VIP-mode
    /// core, as the walk-through creates it, and a dnsrr one alike); then as the name itself.
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
        out
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), CoreError> {
        let unreachable = |reason: String| CoreError::Unreachable { endpoint: self.endpoint.clone(), reason };
        let mut last = "the name does not resolve".to_owned();
        for addr in self.addresses().await {
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("{addr}: no answer in {} s", CONNECT_TIMEOUT.as_secs());
                    continue;
                }
            };
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(hyper::header::HOST, self.host.as_str())
                .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| unreachable(e.to_string()))?;
            let exchange = async {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                Ok::<_, String>((status, body))
            };
            return match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(unreachable(format!("{addr}: {e}"))),
                Err(_) => Err(unreachable(format!("{addr}: no answer in {} s", REQUEST_TIMEOUT.as_secs()))),
            };
        }
        Err(unreachable(last))
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str) -> Settings {
        Settings { extension: "us-east".into(), endpoint: endpoint.into(), token: "t".into(), hitless: true }
    }

    #[test]
    fn endpoints_are_host_and_port() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("interlock", 8080));
        let core = CoreClient::new(&settings("http://10.0.0.2:9090/")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("10.0.0.2", 9090));
        assert!(CoreClient::new(&settings("interlock")).is_err());
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
        let delivery = Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: "abc".into(),
            files: vec![],
            clear_dirs: vec![],
            check: vec!["true".into()],
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
        };
        let mut got = None;
        for _ in 0..50 {
            deliveries.publish(&delivery);
            match core.config("").await {
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
            rejected: None,
            error: None,
            applied_at: 1,
            took_ms: 2,
        };
        core.report(&report).await.unwrap();
        assert_eq!(deliveries.tasks("us-east")["t1"], report);
        let other =
            CoreClient::new(&Settings { extension: "us-west".into(), token, ..settings(&addr.to_string()) }).unwrap();
        assert!(matches!(other.config("").await, Err(CoreError::Unauthorized)), "a token opens its own cluster only");
        server.abort();
    }
}
