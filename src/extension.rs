//! `interlock extension`: the extension service's process. With `HitlessServiceUpdate` it runs
//! on every node (a global service) with that node's Docker socket, and keeps the proxy tasks
//! of its cluster on that node serving the core's current config without restarting them:
//!
//! ```text
//!  core ──GET /v1/extensions/NAME/config?after=HASH&generation=N──▶ extension (one per node)
//!        (long poll, writer replica only; signed both ways)        │ vet the delivery (refuse it whole, or:)
//!                                                                  │ for each proxy container here:
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
//! task keeps running its config, and the rejection is reported. It is tried once more on that
//! container at the next rescan and reported again (the core holds a cluster only on a task
//! rejecting the same config twice, so one failed exec does not), then not again. Serving never
//! depends on this process: if it or the core is down, the proxies keep their last config.
//!
//! **It executes nothing it is sent.** It has the node's Docker socket (root on the node), so
//! what comes over the network is data, never a command, a path, a signal or a target. What it
//! may touch comes from its own service's environment (the core's spec, not the network):
//! `INTERLOCK_PROXY_SERVICE`, the only service whose containers it lists, writes into, runs
//! the check in and signals; `INTERLOCK_PROXY_KIND` (`nginx` | `haproxy`), which fixes the check
//! command (`nginx -t -q -c PATH` | `haproxy -c -f PATH`), the reload signal (SIGHUP | SIGUSR2)
//! and the parts directory it may empty; `INTERLOCK_PROXY_CONFIG_PATH`, in whose directory (and
//! below) alone files may be written. A delivery is accepted only when it agrees with all that
//! ([`vet`]): its extension, proxy service, check command, reload signal and applied file are the
//! extension's own, the directories it empties are among its own, its hash is hex, and it has
//! at most 64 files, each a clean absolute path under the config's directory (components of
//! `[A-Za-z0-9._-]` only, none `.`, `..` or empty). Anything else is refused whole: nothing is
//! written, run or signalled; it is logged ("refused a delivery: …") and reported for each proxy
//! task here with the delivery's hash as rejected ("refused by the extension: …"). Even from an
//! accepted delivery only the files (paths checked), hash and generation are used: what runs,
//! the signal and the applied file are always the extension's own.
//!
//! **Both ends authenticate; the token never crosses the network.** Every request carries
//! `Authorization: Interlock-HMAC ts=…,nonce=…,mac=…`: `reconcilers::token::request_mac` under
//! the extension's token over its name, the method, the path and query as sent, the time, a
//! fresh random nonce and the body. Every answer, of any status, must carry `x-interlock-mac`:
//! `response_mac` under the same token over the extension, that request's nonce, the status and
//! the body. An answer without a valid one (something else on the core's address, a replayed
//! answer, a changed body, a core with another key) is not the core's: its body is never used,
//! the next address is tried as if nothing listened at this one, and it is warned about (the
//! first and every 20th time).
//!
//! Several core replicas may run; only the writer serves configs. A standby answers 503 naming
//! the writer's node (a MAC-valid answer, like any other) and the client tries the core's next
//! address (`tasks.NAME` lists every replica), so a replica that is not the writer never hands
//! out its (possibly stale) config. Configs only go forward, by generation: the fetcher drops an
//! answer that is not newer than what it has, and a container is never given a config older
//! than the one its applied file records (it is reported as it is instead, so the core learns
//! what it runs). Every request costs the core a long poll, so the fetcher never loops hot: at
//! least 100 ms between two requests whatever the answers, and a doubling delay (to 10 s) after
//! errors and after answers that are not progress.
//!
//! Without `HitlessServiceUpdate` the extension only says where its core is and waits: the core
//! renders the configs and Swarm rolls them out.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reconcilers::config::ProxyKind;
use reconcilers::desired::{Delivery, TOKEN_SECRET_TARGET};
use reconcilers::proxy::{self, HITLESS_APPLIED_FILE, HitlessLayout};
use reconcilers::token::{Authorization, RESPONSE_MAC_HEADER, SignedRequest, request_mac, response_mac, same_token};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::delivery::{TaskReport, WRITER_HEADER};
use crate::docker::{DockerClient, DockerError, LocalContainer};

/// How often the proxy containers on this node are looked at without a trigger.
const RESCAN: Duration = Duration::from_secs(5);
/// A config request waits this long at most (the core answers within `delivery::LONG_POLL`).
/// The longest wait before asking again when only standby replicas answered.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(11);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between the starts of two config requests, whatever the core answers: a core
/// answering at once every time costs it at most ~10 requests a second per node.
const REQUEST_FLOOR: Duration = Duration::from_millis(100);
/// First delay after an error or an answer that is not progress; it doubles up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The most files a delivery may have (a split config is a main file and a few parts).
const MAX_FILES: usize = 64;
/// The largest answer body read: whatever answers is not trusted until its MAC is checked.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How many times a config the task's binary rejects is tried on a container: the core holds
/// the cluster only when a task reports the same rejection twice.
const REJECTION_ATTEMPTS: u32 = 2;
/// Where the token secret is mounted; `INTERLOCK_TOKEN_FILE` overrides it (tests, hand runs).
const TOKEN_DIR: &str = "/run/secrets";

/// Container start events of the proxy service on this node.
type ContainerStarts = Pin<Box<dyn Stream<Item = Result<String, DockerError>> + Send>>;

/// Why the extension cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("{0} is not set: the core sets it on the extension service")]
    MissingSetting(&'static str),
    #[error("{name}={value:?}: {reason}")]
    BadSetting { name: &'static str, value: String, reason: String },
    #[error("cannot read the extension's token at {path}: {source}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the extension's token at {0} is empty")]
    EmptyToken(String),
    #[error("the core endpoint {0:?} is not HOST:PORT")]
    Endpoint(String),
}

/// A failed call to the core.
#[derive(Debug, thiserror::Error)]
enum CoreError {
    #[error("cannot reach the core at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "no address of {endpoint} answered as the core (no valid {RESPONSE_MAC_HEADER}: not the core, or a core with another key); {answers}"
    )]
    NotCore {
        endpoint: String,
        /// The addresses that answered, and how.
        answers: String,
    },
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
    /// What hitless updates may touch; `Some` when `hitless`.
    pub proxy: Option<ProxyTarget>,
}

impl Settings {
    /// From `INTERLOCK_EXTENSION_NAME`, `INTERLOCK_CORE_ENDPOINT`, `INTERLOCK_HITLESS`, and with
    /// hitless updates `INTERLOCK_PROXY_SERVICE`, `INTERLOCK_PROXY_KIND`,
    /// `INTERLOCK_PROXY_CONFIG_PATH` and the token secret mounted at
    /// `/run/secrets/interlock-extension-token` (`INTERLOCK_TOKEN_FILE` names another file: for
    /// tests and hand runs).
    pub fn from_env() -> Result<Self, ExtensionError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ExtensionError::MissingSetting(name));
        let hitless = std::env::var("INTERLOCK_HITLESS").is_ok_and(|v| v == "1");
        let (token, proxy) = if hitless {
            let path = std::env::var("INTERLOCK_TOKEN_FILE")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| format!("{TOKEN_DIR}/{TOKEN_SECRET_TARGET}"));
            let token = std::fs::read_to_string(&path)
                .map_err(|source| ExtensionError::Token { path: path.clone(), source })?
                .trim()
                .to_owned();
            if token.is_empty() {
                return Err(ExtensionError::EmptyToken(path));
            }
            let kind_text = var("INTERLOCK_PROXY_KIND")?;
            let kind = parse_kind(&kind_text).ok_or_else(|| ExtensionError::BadSetting {
                name: "INTERLOCK_PROXY_KIND",
                value: kind_text.clone(),
                reason: "not nginx or haproxy".to_owned(),
            })?;
            let config_path = var("INTERLOCK_PROXY_CONFIG_PATH")?;
            let proxy =
                ProxyTarget::new(var("INTERLOCK_PROXY_SERVICE")?, kind, config_path.clone()).map_err(|reason| {
                    ExtensionError::BadSetting { name: "INTERLOCK_PROXY_CONFIG_PATH", value: config_path, reason }
                })?;
            (token, Some(proxy))
        } else {
            (String::new(), None)
        };
        Ok(Self {
            extension: var("INTERLOCK_EXTENSION_NAME")?,
            endpoint: var("INTERLOCK_CORE_ENDPOINT")?,
            token,
            hitless,
            proxy,
        })
    }
}

/// `nginx` or `haproxy`, as `ProxyKind` displays them.
fn parse_kind(text: &str) -> Option<ProxyKind> {
    [ProxyKind::Nginx, ProxyKind::Haproxy].into_iter().find(|kind| kind.to_string() == text)
}

/// What the extension may touch in its node's proxy containers, from its own service's
/// environment: every command, signal and path it uses derives from this, never from the
/// network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The proxy service whose containers it writes into, checks and signals; no other.
    pub service: String,
    pub kind: ProxyKind,
    /// Where the proxy reads its config: files are written in its directory (or below) only.
    pub config_path: String,
}

impl ProxyTarget {
    /// `Err` (why) unless `service` is set and `config_path` is a clean absolute path in a
    /// directory other than `/` (a config at the root would let deliveries write anywhere).
    pub fn new(service: String, kind: ProxyKind, config_path: String) -> Result<Self, String> {
        if service.is_empty() {
            return Err("no proxy service".to_owned());
        }
        match clean_components(&config_path) {
            Some(parts) if parts.len() >= 2 => Ok(Self { service, kind, config_path }),
            Some(_) => Err("a config at the root: deliveries could write anywhere".to_owned()),
            None => Err("not a clean absolute path (components of [A-Za-z0-9._-], no . or ..)".to_owned()),
        }
    }

    /// The hitless layout of its kind on its config path: what the core builds deliveries from.
    fn layout(&self) -> HitlessLayout {
        proxy::hitless_layout(self.kind, &self.config_path)
    }

    /// The check command: the kind's, on the config path.
    fn check(&self) -> Vec<String> {
        self.layout().check
    }

    fn reload_signal(&self) -> &'static str {
        self.layout().reload_signal
    }

    /// The only directories a delivery may have emptied.
    fn parts_dirs(&self) -> Vec<String> {
        self.layout().parts_dirs
    }

    /// Whether a delivered file may be written at `path`: a clean absolute path below the
    /// config's directory.
    fn may_write(&self, path: &str) -> bool {
        let dir = clean_components(&self.config_path).map(|mut parts| {
            parts.pop();
            parts
        });
        match (dir, clean_components(path)) {
            (Some(dir), Some(file)) => file.len() > dir.len() && file.starts_with(&dir),
            _ => false,
        }
    }
}

/// The components of `path` when it is clean and absolute: `/`, then components of
/// `[A-Za-z0-9._-]` only, none empty, `.` or `..`. `None` otherwise (`/` itself included).
fn clean_components(path: &str) -> Option<Vec<&str>> {
    let plain = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    path.strip_prefix('/')?.split('/').map(|c| plain(c).then_some(c)).collect()
}

/// Why a delivery is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("it is for extension {got:?}, this is {own:?}")]
    Extension { got: String, own: String },
    #[error("it is for the containers of service {got:?}; this extension serves {own:?}'s only")]
    ProxyService { got: String, own: String },
    #[error("its hash {0:?} is not a hash")]
    Hash(String),
    #[error("its check command {got:?} is not this extension's {own:?}")]
    Check { got: Vec<String>, own: Vec<String> },
    #[error("its reload signal {got:?} is not this extension's {own}")]
    ReloadSignal { got: String, own: &'static str },
    #[error("its applied file {got:?} is not {HITLESS_APPLIED_FILE}")]
    AppliedFile { got: String },
    #[error("it would empty {got:?}, which is not among {own:?}")]
    ClearDir { got: String, own: Vec<String> },
    #[error("it has {0} files, more than {MAX_FILES}")]
    TooManyFiles(usize),
    #[error("it would write {got:?}, not a clean absolute path under the config's directory ({config_path})")]
    Path { got: String, config_path: String },
}

/// A delivery that passed [`vet`]. Only its files (paths checked), hash and generation come from
/// the network; what runs, the signal and the applied file are the extension's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vetted {
    hash: String,
    generation: u64,
    files: Vec<(String, Vec<u8>)>,
    /// Its parts directories to empty first (the extension's own, when the delivery asks).
    clear_dirs: Vec<String>,
}

/// What [`vet`] says of a delivery.
type Verdict = Result<Arc<Vetted>, Refusal>;

/// Accepts `delivery` for extension `extension` driving `own`, or says why not. Pure.
fn vet(extension: &str, own: &ProxyTarget, delivery: &Delivery) -> Result<Vetted, Refusal> {
    if delivery.extension != extension {
        return Err(Refusal::Extension { got: delivery.extension.clone(), own: extension.to_owned() });
    }
    if delivery.proxy_service != own.service {
        return Err(Refusal::ProxyService { got: delivery.proxy_service.clone(), own: own.service.clone() });
    }
    // It goes into the applied file and the reports: hex only, so it cannot forge a generation.
    let hash = &delivery.hash;
    if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::Hash(hash.chars().take(80).collect()));
    }
    let check = own.check();
    if delivery.check != check {
        return Err(Refusal::Check { got: delivery.check.clone(), own: check });
    }
    if delivery.reload_signal != own.reload_signal() {
        return Err(Refusal::ReloadSignal { got: delivery.reload_signal.clone(), own: own.reload_signal() });
    }
    if delivery.applied_file != HITLESS_APPLIED_FILE {
        return Err(Refusal::AppliedFile { got: delivery.applied_file.clone() });
    }
    let dirs = own.parts_dirs();
    if let Some(dir) = delivery.clear_dirs.iter().find(|d| !dirs.contains(d)) {
        return Err(Refusal::ClearDir { got: dir.clone(), own: dirs });
    }
    if delivery.files.len() > MAX_FILES {
        return Err(Refusal::TooManyFiles(delivery.files.len()));
    }
    if let Some(file) = delivery.files.iter().find(|f| !own.may_write(&f.path)) {
        return Err(Refusal::Path { got: file.path.clone(), config_path: own.config_path.clone() });
    }
    Ok(Vetted {
        hash: hash.clone(),
        generation: delivery.generation,
        files: delivery.files.iter().map(|f| (f.path.clone(), f.content.clone().into_bytes())).collect(),
        clear_dirs: dirs.into_iter().filter(|d| delivery.clear_dirs.contains(d)).collect(),
    })
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
    let own = settings.proxy.clone().ok_or(ExtensionError::MissingSetting("INTERLOCK_PROXY_SERVICE"))?;
    let core = Arc::new(CoreClient::new(&settings)?);
    info!(
        extension = %settings.extension,
        core = %settings.endpoint,
        proxy_service = %own.service,
        kind = %own.kind,
        config = %own.config_path,
        "extension up: keeping this node's proxy tasks on the core's config"
    );
    let (tx, mut rx) = watch::channel::<Option<Arc<Delivery>>>(None);
    let fetcher = tokio::spawn(fetch_configs(core.clone(), tx));
    let mut applier = Applier {
        docker,
        core,
        extension: settings.extension.clone(),
        own,
        vetted: None,
        refused_delivery: None,
        applied: BTreeMap::new(),
        rejected: BTreeMap::new(),
        older: BTreeMap::new(),
        reported: BTreeMap::new(),
        kept: None,
    };
    let mut starts: Option<ContainerStarts> = None;
    // A start-event stream that keeps failing (the engine restarting) is resubscribed with
    // backoff, not at once: the rescan still looks every few seconds meanwhile.
    let mut stream_failures: u32 = 0;
    let mut resubscribe_at = tokio::time::Instant::now();
    let mut rescan = tokio::time::interval(RESCAN);
    tokio::pin!(shutdown);
    loop {
        let current = rx.borrow().clone();
        if current.is_some() && starts.is_none() && tokio::time::Instant::now() >= resubscribe_at {
            // Its own proxy service's, whatever a delivery names.
            starts = Some(Box::pin(applier.docker.container_starts(&applier.own.service)));
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() { break }
                let current = rx.borrow().clone();
                if let Some(delivery) = current { applier.apply_all(&delivery, false).await }
            }
            started = next_start(&mut starts) => {
                if started.is_none() {
                    starts = None;
                    stream_failures = stream_failures.saturating_add(1);
                    resubscribe_at = tokio::time::Instant::now() + stream_backoff(stream_failures);
                } else {
                    stream_failures = 0;
                }
                if let Some(delivery) = &current { applier.apply_all(delivery, false).await }
            }
            _ = rescan.tick() => {
                if let Some(delivery) = &current { applier.apply_all(delivery, true).await }
            }
            () = &mut shutdown => break,
        }
    }
    fetcher.abort();
    Ok(())
}

/// The wait before subscribing again after `failures` ended or failed streams in a row: 1 s,
/// doubling, at most 30 s.
fn stream_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
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
                // Replicas that all say they do not write (a failover, a core that lost the
                // swarm for a while) answer at once and cheaply: ask again within a second, so
                // the writer, once there, is found soon.
                match e {
                    CoreError::OnlyStandbys { .. } => backoff_delay(failures).min(STANDBY_RETRY),
                    _ => backoff_delay(failures),
                }
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

    /// The applied file's content once the config `hash` at `generation` runs.
    fn marker(hash: &str, generation: u64) -> String {
        format!("{hash} {generation}\n")
    }
}

/// What to do with a delivery for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// The container runs it already.
    AlreadyApplied,
    /// It is older than what the container runs (a stale replica's answer): write nothing.
    Older,
    Apply,
}

/// Configs only go forward: equal generations above 0 with different hashes cannot both be the
/// cluster's, so the one running wins; generation 0 is "unknown" and never outranks anything.
fn decide(running: &RunningConfig, hash: &str, generation: u64) -> Decision {
    if hash == running.hash {
        Decision::AlreadyApplied
    } else if generation < running.generation || (generation == running.generation && running.generation > 0) {
        Decision::Older
    } else {
        Decision::Apply
    }
}

/// A config a container's binary rejected, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    hash: String,
    attempts: u32,
}

/// Whether to try a config on a container whose binary rejected it `before` times: once more,
/// at a rescan (a few seconds on; the core acts on a second rejection only), then never.
fn may_try(before: u32, rescan: bool) -> bool {
    before == 0 || (before < REJECTION_ATTEMPTS && rescan)
}

/// Applies configs to this node's proxy containers, remembering what each runs.
struct Applier {
    docker: DockerClient,
    core: Arc<CoreClient>,
    extension: String,
    /// The only service, commands, signal and paths it uses.
    own: ProxyTarget,
    /// The last delivery vetted, and the verdict (kept: it is asked again every rescan).
    vetted: Option<(Arc<Delivery>, Verdict)>,
    /// The hash of the last delivery refused (logged once).
    refused_delivery: Option<String>,
    /// Container → what it runs.
    applied: BTreeMap<String, RunningConfig>,
    /// Container → the config its binary rejected last, tried `REJECTION_ATTEMPTS` times.
    rejected: BTreeMap<String, Rejection>,
    /// Container → the hash last not applied as older than what it runs (warned about once).
    older: BTreeMap<String, String>,
    /// Container → what was last reported to the core for it ([`said`]).
    reported: BTreeMap<String, String>,
    /// The last config this process applied anywhere: written back into a container whose
    /// binary rejects a newer one, so the files on disk stay what the task runs.
    kept: Option<Arc<Vetted>>,
}

/// What a report says, to send it once: with a rejection's attempt, so the second rejection of
/// the same config on the same task is reported too.
fn said(report: &TaskReport, attempt: u32) -> String {
    format!("{}|{}|{}|{attempt}", report.hash, report.generation, report.rejected.as_deref().unwrap_or_default())
}

impl Applier {
    /// `rescan`: called by the periodic rescan, the only time a rejected config is retried.
    async fn apply_all(&mut self, delivery: &Arc<Delivery>, rescan: bool) {
        let verdict = match &self.vetted {
            Some((seen, verdict)) if Arc::ptr_eq(seen, delivery) => verdict.clone(),
            _ => {
                let verdict = vet(&self.extension, &self.own, delivery).map(Arc::new);
                self.vetted = Some((delivery.clone(), verdict.clone()));
                verdict
            }
        };
        if let Err(refusal) = &verdict
            && self.refused_delivery.as_deref() != Some(delivery.hash.as_str())
        {
            warn!(hash = %short(&delivery.hash), generation = delivery.generation, "refused a delivery: {refusal}");
            self.refused_delivery = Some(delivery.hash.clone());
        }
        let containers = match self.docker.running_containers(&self.own.service).await {
            Ok(containers) => containers,
            Err(e) => {
                warn!("cannot list this node's proxy containers: {e}");
                return;
            }
        };
        let here: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.applied.retain(|id, _| here.contains(id.as_str()));
        self.rejected.retain(|id, _| here.contains(id.as_str()));
        self.older.retain(|id, _| here.contains(id.as_str()));
        self.reported.retain(|id, _| here.contains(id.as_str()));
        let mut any_applied = false;
        for container in &containers {
            let outcome = match &verdict {
                Ok(vetted) => self.apply(container, vetted, rescan).await,
                Err(refusal) => self.refuse(container, &delivery.hash, refusal).await,
            };
            let Some((report, attempt)) = outcome else { continue };
            if let Ok(vetted) = &verdict {
                any_applied |= report.hash == vetted.hash && report.error.is_none();
            }
            if self.reported.get(&container.id) != Some(&said(&report, attempt)) {
                match self.core.report(&report).await {
                    Ok(()) => {
                        self.reported.insert(container.id.clone(), said(&report, attempt));
                    }
                    Err(e) => warn!("cannot report to the core: {e}"),
                }
            }
        }
        if any_applied && let Ok(vetted) = verdict {
            self.kept = Some(vetted);
        }
    }

    /// What the container runs: remembered, else read from its applied file. `None` while
    /// Docker cannot say (applying blind could take the task backwards).
    async fn running(&self, id: &str) -> Option<RunningConfig> {
        if let Some(running) = self.applied.get(id) {
            return Some(running.clone());
        }
        match self.read_applied(id).await {
            Ok(running) => Some(running),
            Err(e) => {
                debug!("cannot read {HITLESS_APPLIED_FILE} in {}: {e}", short(id));
                None
            }
        }
    }

    /// The report for a container of a refused delivery: it keeps what it runs.
    async fn refuse(&mut self, container: &LocalContainer, hash: &str, refusal: &Refusal) -> Option<(TaskReport, u32)> {
        let running = self.running(&container.id).await?;
        self.applied.insert(container.id.clone(), running.clone());
        let error = format!("refused by the extension: {refusal}");
        Some((task_report(container, &running, Some(hash.to_owned()), Some(error), Instant::now()), 0))
    }

    /// Brings one container to `delivery`; the report to send, if any, with its rejection's
    /// attempt (0: not a rejection).
    async fn apply(
        &mut self,
        container: &LocalContainer,
        delivery: &Arc<Vetted>,
        rescan: bool,
    ) -> Option<(TaskReport, u32)> {
        let started = Instant::now();
        let id = container.id.as_str();
        let running = self.running(id).await?;
        let report = |running: &RunningConfig, rejected: Option<String>, error: Option<String>| {
            task_report(container, running, rejected, error, started)
        };
        match decide(&running, &delivery.hash, delivery.generation) {
            Decision::AlreadyApplied => {
                // Same files: it runs this generation too (a task started on the rolled-out
                // config records no generation), and an older one must not outrank it.
                let running =
                    RunningConfig { hash: running.hash, generation: running.generation.max(delivery.generation) };
                self.applied.insert(id.to_owned(), running.clone());
                return Some((report(&running, None, None), 0));
            }
            Decision::Older => {
                if self.older.get(id) != Some(&delivery.hash) {
                    warn!(
                        container = %short(id),
                        hash = %short(&delivery.hash),
                        generation = delivery.generation,
                        running_hash = %short(&running.hash),
                        running_generation = running.generation,
                        "not applied: older than the config the task runs"
                    );
                    self.older.insert(id.to_owned(), delivery.hash.clone());
                }
                self.applied.insert(id.to_owned(), running.clone());
                return Some((report(&running, None, None), 0));
            }
            Decision::Apply => {}
        }
        let before = self.rejected.get(id).filter(|r| r.hash == delivery.hash).map_or(0, |r| r.attempts);
        if !may_try(before, rescan) {
            return None;
        }
        match self.write_check_reload(id, delivery, &running.hash).await {
            Ok(()) => {
                info!(container = %short(id), hash = %short(&delivery.hash), generation = delivery.generation, took_ms = started.elapsed().as_millis(), "proxy reloaded in place");
                let now = RunningConfig { hash: delivery.hash.clone(), generation: delivery.generation };
                self.applied.insert(id.to_owned(), now.clone());
                self.rejected.remove(id);
                Some((report(&now, None, None), 0))
            }
            Err(error) => {
                let attempt = before + 1;
                warn!(container = %short(id), hash = %short(&delivery.hash), attempt, "not applied: {error}");
                self.applied.insert(id.to_owned(), running.clone());
                self.rejected.insert(id.to_owned(), Rejection { hash: delivery.hash.clone(), attempts: attempt });
                Some((report(&running, Some(delivery.hash.clone()), Some(error)), attempt))
            }
        }
    }

    /// What the container's start command or an earlier reload recorded (nothing known if the
    /// file is missing); an error when Docker cannot say.
    async fn read_applied(&self, container: &str) -> Result<RunningConfig, DockerError> {
        let out = self.docker.exec(container, &["cat".to_owned(), HITLESS_APPLIED_FILE.to_owned()]).await?;
        Ok(if out.exit_code == 0 { RunningConfig::parse(&out.output) } else { RunningConfig::default() })
    }

    /// `running`: the hash the container runs now, whose files are written back if `delivery`'s
    /// are rejected (when this process has them).
    async fn write_check_reload(&self, container: &str, delivery: &Vetted, running: &str) -> Result<(), String> {
        self.write(container, delivery).await?;
        let check = self.own.check();
        let checked = self.docker.exec(container, &check).await.map_err(|e| e.to_string())?;
        if checked.exit_code != 0 {
            let reason = format!("{} rejects it: {}", check.join(" "), checked.output.trim());
            // Put back what the task runs, when this process has it.
            if let Some(kept) = self.kept.as_ref().filter(|k| k.hash == running)
                && let Err(e) = self.write(container, kept).await
            {
                warn!("cannot write the previous config back: {e}");
            }
            return Err(reason);
        }
        self.docker.signal(container, self.own.reload_signal()).await.map_err(|e| e.to_string())?;
        let marker = vec![(
            HITLESS_APPLIED_FILE.to_owned(),
            RunningConfig::marker(&delivery.hash, delivery.generation).into_bytes(),
        )];
        self.docker.write_files(container, &marker).await.map_err(|e| e.to_string())
    }

    async fn write(&self, container: &str, delivery: &Vetted) -> Result<(), String> {
        if !delivery.clear_dirs.is_empty() {
            let mut rm = vec!["rm".to_owned(), "-rf".to_owned(), "--".to_owned()];
            rm.extend(delivery.clear_dirs.iter().cloned());
            self.docker.exec(container, &rm).await.map_err(|e| e.to_string())?;
        }
        self.docker.write_files(container, &delivery.files).await.map_err(|e| e.to_string())
    }
}

/// A container's report: it runs `running`; `rejected` with `error` when it did not take one.
fn task_report(
    container: &LocalContainer,
    running: &RunningConfig,
    rejected: Option<String>,
    error: Option<String>,
    started: Instant,
) -> TaskReport {
    TaskReport {
        task: container.task_id.clone().unwrap_or_else(|| container.id.clone()),
        node: container.node_id.clone().unwrap_or_default(),
        container: container.id.clone(),
        hash: running.hash.clone(),
        generation: running.generation,
        rejected,
        error,
        applied_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// One address's answer to a call, its MAC checked.
#[derive(Debug)]
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
    /// Answers without a valid MAC so far: warned about at the first and every 20th.
    not_core: AtomicU64,
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
            not_core: AtomicU64::new(0),
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

    /// The writer's answer: standbys, and whatever answers without the core's MAC, are passed
    /// over for the next address.
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
        let mut not_core: Vec<String> = Vec::new();
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
                Err(CallError::NotCore(reason)) => {
                    let seen = self.not_core.fetch_add(1, Ordering::Relaxed) + 1;
                    if seen == 1 || seen.is_multiple_of(20) {
                        warn!(%addr, seen, "an answer that is not the core's ({reason}); ignored, trying the next address");
                    }
                    not_core.push(format!("{addr}: {reason}"));
                }
                Err(CallError::Connect(reason)) => last = format!("{addr}: {reason}"),
                // Something that hangs or speaks no HTTP on the core's name must not stop the
                // search for the core: the next address is tried, and this one is no longer
                // taken for the writer.
                Err(CallError::Exchange(reason)) => {
                    let mut writer = self.writer.lock().expect("writer lock");
                    if *writer == Some(addr) {
                        *writer = None;
                    }
                    last = format!("{addr}: {reason}");
                }
            }
        }
        if standbys.is_empty() {
            if !not_core.is_empty() {
                return Err(CoreError::NotCore { endpoint: self.endpoint.clone(), answers: not_core.join("; ") });
            }
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

    /// One signed request to one address; its answer only if the core's MAC on it is valid.
    async fn call_at(&self, addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Result<Answer, CallError> {
        let nonce = random_nonce().map_err(|e| CallError::Exchange(format!("no random nonce: {e}")))?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let signed = SignedRequest {
            extension: &self.extension,
            method: method.as_str(),
            target: path,
            timestamp,
            nonce: &nonce,
            body: &body,
        };
        let authorization = Authorization { timestamp, nonce: nonce.clone(), mac: request_mac(&self.token, &signed) };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(CallError::Connect(e.to_string())),
            Err(_) => return Err(CallError::Connect(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.as_str())
            .header(hyper::header::AUTHORIZATION, authorization.header())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::Exchange(e.to_string()))?;
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| CallError::Exchange(e.to_string()))?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(|e| CallError::Exchange(e.to_string()))?;
            let status = response.status();
            let header = |name: &str| {
                response.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            };
            let (writer, mac) = (header(WRITER_HEADER), header(RESPONSE_MAC_HEADER));
            // Bounded: nothing about this answer is trusted yet.
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::NotCore(format!("answered {status}, unreadable: {e}")))?
                .to_bytes();
            if !answer_is_from_core(&self.token, &self.extension, &nonce, status, &body, mac.as_deref()) {
                let how = if mac.is_some() { "an invalid" } else { "no" };
                // The core signs only requests it authenticated: its 401 is unsigned.
                let hint = if status == StatusCode::UNAUTHORIZED {
                    " (if the core: it does not take this extension's token, one of an earlier key? the service is updated with a new one)"
                } else {
                    ""
                };
                return Err(CallError::NotCore(format!("answered {status} with {how} {RESPONSE_MAC_HEADER}{hint}")));
            }
            if status == StatusCode::SERVICE_UNAVAILABLE
                && let Some(writer) = writer
            {
                return Ok(Answer::Standby { writer });
            }
            Ok(Answer::Served(status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(CallError::Exchange(format!("no answer in {} s", REQUEST_TIMEOUT.as_secs()))),
        }
    }
}

/// Whether an answer carries the core's MAC for the request that sent `nonce`: under this
/// extension's token, over this extension, nonce, status and body. So neither another server, nor
/// an answer to another request (an older delivery), nor a changed body passes.
fn answer_is_from_core(
    token: &str,
    extension: &str,
    nonce: &str,
    status: StatusCode,
    body: &[u8],
    mac: Option<&str>,
) -> bool {
    mac.is_some_and(|mac| same_token(mac, &response_mac(token, extension, nonce, status.as_u16(), body)))
}

/// 16 random bytes from the kernel, hex: a request's nonce.
fn random_nonce() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why one address gave no answer.
enum CallError {
    /// Nothing listens there (the next address is tried).
    Connect(String),
    /// Something answered, but not with the core's MAC: not the core (the next address is tried).
    NotCore(String),
    /// It took the request and failed it.
    Exchange(String),
}

impl ConfigSource for CoreClient {
    /// The served config if newer than `after` at `generation`; `None` when the core has
    /// nothing newer.
    async fn config(&self, after: &str, generation: u64) -> Result<Option<Delivery>, CoreError> {
        // A hash is hex (a core's); anything else would not survive in a URL.
        let after = if after.bytes().all(|b| b.is_ascii_hexdigit()) { after } else { "" };
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
    use std::sync::atomic::AtomicUsize;

    use reconcilers::desired::DeliveredFile;

    use super::*;

    const TOKEN: &str = "t";

    fn target() -> ProxyTarget {
        ProxyTarget::new("interlock-proxy-us-east".into(), ProxyKind::Nginx, "/etc/nginx/nginx.conf".into()).unwrap()
    }

    fn settings(endpoint: &str) -> Settings {
        Settings {
            extension: "us-east".into(),
            endpoint: endpoint.into(),
            token: TOKEN.into(),
            hitless: true,
            proxy: Some(target()),
        }
    }

    /// A delivery as the core makes it for `target()`.
    fn delivery(hash: &str, generation: u64) -> Delivery {
        Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: hash.into(),
            generation,
            files: vec![DeliveredFile { path: "/etc/nginx/nginx.conf".into(), content: "events {}\n".into() }],
            clear_dirs: vec![],
            check: ["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"].map(String::from).to_vec(),
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
        }
    }

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn vet_us_east(d: &Delivery) -> Result<Vetted, Refusal> {
        vet("us-east", &target(), d)
    }

    #[test]
    fn the_proxy_kind_and_config_path_are_checked_at_start() {
        assert_eq!(parse_kind("nginx"), Some(ProxyKind::Nginx));
        assert_eq!(parse_kind("haproxy"), Some(ProxyKind::Haproxy));
        assert_eq!(parse_kind("sh"), None);
        let new = |service: &str, path: &str| ProxyTarget::new(service.into(), ProxyKind::Nginx, path.into());
        assert!(new("p", "/etc/nginx/nginx.conf").is_ok());
        assert!(new("", "/etc/nginx/nginx.conf").is_err(), "no service");
        for path in ["/nginx.conf", "nginx.conf", "/etc/../nginx.conf", "/etc//nginx.conf", "/etc/nginx/", "/", ""] {
            assert!(new("p", path).is_err(), "{path}");
        }
    }

    #[test]
    fn a_delivery_of_the_extensions_own_kind_is_accepted_with_its_own_commands() {
        let vetted = vet_us_east(&delivery(HASH, 3)).unwrap();
        assert_eq!((vetted.hash.as_str(), vetted.generation), (HASH, 3));
        assert_eq!(vetted.files, [("/etc/nginx/nginx.conf".to_owned(), b"events {}\n".to_vec())]);
        assert!(vetted.clear_dirs.is_empty());
        // A split config: parts below the config's directory, its parts directory emptied.
        let mut split = delivery(HASH, 3);
        split.files.push(DeliveredFile { path: "/etc/nginx/interlock.d/part-001.conf".into(), content: "x".into() });
        split.clear_dirs = vec!["/etc/nginx/interlock.d".into()];
        let vetted = vet_us_east(&split).unwrap();
        assert_eq!(vetted.clear_dirs, ["/etc/nginx/interlock.d"]);
        assert_eq!(vetted.files.len(), 2);
        // What the core renders for HAProxy passes too.
        let haproxy =
            ProxyTarget::new("hap".into(), ProxyKind::Haproxy, "/usr/local/etc/haproxy/haproxy.cfg".into()).unwrap();
        let d = Delivery {
            proxy_service: "hap".into(),
            files: vec![DeliveredFile { path: "/usr/local/etc/haproxy/haproxy.cfg".into(), content: "x".into() }],
            check: ["haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg"].map(String::from).to_vec(),
            reload_signal: "SIGUSR2".into(),
            ..delivery(HASH, 1)
        };
        assert!(vet("us-east", &haproxy, &d).is_ok());
        assert!(
            matches!(
                vet("us-east", &haproxy, &Delivery { clear_dirs: vec!["/usr/local/etc/haproxy".into()], ..d }),
                Err(Refusal::ClearDir { .. })
            ),
            "HAProxy has no directory to empty"
        );
    }

    #[test]
    fn a_delivery_asking_for_anything_but_the_extensions_own_is_refused_whole() {
        let base = delivery(HASH, 3);
        let with_file = |path: &str| Delivery {
            files: vec![
                DeliveredFile { path: "/etc/nginx/nginx.conf".into(), content: "x".into() },
                DeliveredFile { path: path.into(), content: "pwned".into() },
            ],
            ..base.clone()
        };
        type Case = (&'static str, Delivery, fn(&Refusal) -> bool);
        let cases: Vec<Case> = vec![
            ("another extension's", Delivery { extension: "us-west".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::Extension { .. })
            }),
            ("another container's service", Delivery { proxy_service: "victim".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::ProxyService { .. })
            }),
            ("the root", with_file("/"), |r| matches!(r, Refusal::Path { .. })),
            ("/etc/passwd", with_file("/etc/passwd"), |r| matches!(r, Refusal::Path { .. })),
            ("/pwned", with_file("/pwned"), |r| matches!(r, Refusal::Path { .. })),
            ("a ../ escape", with_file("/etc/nginx/../passwd"), |r| matches!(r, Refusal::Path { .. })),
            ("a deeper ../ escape", with_file("/etc/nginx/interlock.d/../../../etc/passwd"), |r| {
                matches!(r, Refusal::Path { .. })
            }),
            ("a ./ component", with_file("/etc/nginx/./nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("an empty component", with_file("/etc/nginx//nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("the directory itself", with_file("/etc/nginx"), |r| matches!(r, Refusal::Path { .. })),
            ("a sibling directory", with_file("/etc/nginxx/nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("a relative path", with_file("etc/nginx/nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("a space", with_file("/etc/nginx/a b"), |r| matches!(r, Refusal::Path { .. })),
            ("a newline", with_file("/etc/nginx/a\nb"), |r| matches!(r, Refusal::Path { .. })),
            (
                "a shell as the check",
                Delivery { check: ["sh", "-c", "echo pwned > /pwned"].map(String::from).to_vec(), ..base.clone() },
                |r| matches!(r, Refusal::Check { .. }),
            ),
            (
                "the check on another file",
                Delivery {
                    check: ["nginx", "-t", "-q", "-c", "/tmp/x.conf"].map(String::from).to_vec(),
                    ..base.clone()
                },
                |r| matches!(r, Refusal::Check { .. }),
            ),
            ("SIGKILL", Delivery { reload_signal: "SIGKILL".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::ReloadSignal { .. })
            }),
            ("an applied file elsewhere", Delivery { applied_file: "/etc/passwd".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::AppliedFile { .. })
            }),
            ("a clear_dir of /", Delivery { clear_dirs: vec!["/".into()], ..base.clone() }, |r| {
                matches!(r, Refusal::ClearDir { .. })
            }),
            (
                "a clear_dir of the config's directory",
                Delivery { clear_dirs: vec!["/etc/nginx".into()], ..base.clone() },
                |r| matches!(r, Refusal::ClearDir { .. }),
            ),
            ("a hash forging a generation", Delivery { hash: format!("{HASH} 999999"), ..base.clone() }, |r| {
                matches!(r, Refusal::Hash(_))
            }),
            ("an empty hash", Delivery { hash: String::new(), ..base.clone() }, |r| matches!(r, Refusal::Hash(_))),
            (
                "too many files",
                Delivery {
                    files: (0..=MAX_FILES)
                        .map(|n| DeliveredFile {
                            path: format!("/etc/nginx/interlock.d/part-{n}.conf"),
                            content: String::new(),
                        })
                        .collect(),
                    ..base.clone()
                },
                |r| matches!(r, Refusal::TooManyFiles(65)),
            ),
        ];
        for (what, d, expected) in cases {
            match vet_us_east(&d) {
                Err(refusal) => assert!(expected(&refusal), "{what}: refused, but as {refusal:?}"),
                Ok(_) => panic!("{what}: accepted"),
            }
        }
    }

    #[test]
    fn a_rejected_config_is_tried_twice_at_most_the_second_time_at_a_rescan() {
        assert!(may_try(0, false) && may_try(0, true), "never rejected");
        assert!(!may_try(1, false), "not at once again (a new config, a container start)");
        assert!(may_try(1, true), "once more at the next rescan");
        assert!(!may_try(2, true) && !may_try(2, false), "then never");
        let report = |rejected: Option<&str>| TaskReport {
            task: "t".into(),
            node: "n".into(),
            container: "c".into(),
            hash: "a".into(),
            generation: 1,
            rejected: rejected.map(str::to_owned),
            error: Some("nginx rejects it".into()),
            applied_at: 1,
            took_ms: 1,
        };
        assert_ne!(said(&report(Some("b")), 1), said(&report(Some("b")), 2), "the second rejection is reported too");
        assert_eq!(said(&report(Some("b")), 2), said(&report(Some("b")), 2));
        assert_ne!(said(&report(None), 0), said(&report(Some("b")), 0));
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
        let written = RunningConfig::marker("def", 12);
        assert_eq!(written, "def 12\n");
        assert_eq!(parse(&written), ("def".to_owned(), 12));
    }

    #[test]
    fn a_container_only_takes_configs_newer_than_the_one_it_runs() {
        let running = |hash: &str, generation| RunningConfig { hash: hash.into(), generation };
        let decide = |r: RunningConfig, d: Delivery| decide(&r, &d.hash, d.generation);
        assert_eq!(decide(running("a", 5), delivery("a", 5)), Decision::AlreadyApplied);
        assert_eq!(decide(running("a", 0), delivery("a", 5)), Decision::AlreadyApplied, "started on it");
        assert_eq!(decide(running("a", 5), delivery("b", 6)), Decision::Apply);
        assert_eq!(decide(running("a", 5), delivery("b", 3)), Decision::Older, "older");
        assert_eq!(decide(running("a", 5), delivery("b", 5)), Decision::Older, "same generation, other files");
        assert_eq!(decide(running("a", 5), delivery("b", 0)), Decision::Older, "an old core's config");
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
    fn a_failing_start_event_stream_is_resubscribed_with_backoff() {
        let waits: Vec<u64> = (1..=7).map(|n| stream_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
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

    /// Serves HTTP on loopback: every connection's request (head, and body when it came with it)
    /// goes to `answer`, which gives the whole response.
    async fn serve(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
        let answer = Arc::new(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = answer(&String::from_utf8_lossy(&request));
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    /// The request's `Authorization`, parsed.
    fn authorization(request: &str) -> Authorization {
        let value = request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .unwrap_or_else(|| panic!("no authorization in {request}"));
        Authorization::parse(value.trim()).unwrap_or_else(|| panic!("not Interlock-HMAC: {value}"))
    }

    /// How a test server signs its answer.
    #[derive(Clone, Copy)]
    enum Signing {
        /// As the core: the extension's token, the request's nonce, the body sent.
        Valid,
        /// No MAC header.
        None,
        /// A valid MAC over another body than the one sent.
        TamperedBody,
        /// Under another extension's token.
        OtherToken,
        /// Valid for another request's nonce: a replayed answer.
        Replayed,
    }

    /// An HTTP answer `status` (`"204 No Content"`) with `headers` and `body`, signed as `signing`
    /// says for the request `request`.
    fn signed(request: &str, signing: Signing, status: &str, headers: &str, body: &str) -> String {
        let nonce = authorization(request).nonce;
        let code: u16 = status[..3].parse().unwrap();
        let other_token = reconcilers::token::extension_token("key", "us-west");
        let mac = match signing {
            Signing::Valid => Some(response_mac(TOKEN, "us-east", &nonce, code, body.as_bytes())),
            Signing::None => None,
            Signing::TamperedBody => Some(response_mac(TOKEN, "us-east", &nonce, code, b"{}")),
            Signing::OtherToken => Some(response_mac(&other_token, "us-east", &nonce, code, body.as_bytes())),
            Signing::Replayed => {
                Some(response_mac(TOKEN, "us-east", "00112233445566778899aabbccddeeff", code, body.as_bytes()))
            }
        };
        let mac = mac.map(|m| format!("{RESPONSE_MAC_HEADER}: {m}\r\n")).unwrap_or_default();
        format!("HTTP/1.1 {status}\r\n{headers}{mac}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    #[test]
    fn only_the_cores_mac_for_this_request_makes_an_answer_the_cores() {
        let nonce = "ab".repeat(16);
        let body = br#"{"hash":"abc"}"#;
        let mac = response_mac(TOKEN, "us-east", &nonce, 200, body);
        let ok = |token: &str, status: StatusCode, body: &[u8], mac: Option<&str>| {
            answer_is_from_core(token, "us-east", &nonce, status, body, mac)
        };
        assert!(ok(TOKEN, StatusCode::OK, body, Some(&mac)), "the core's");
        assert!(!ok(TOKEN, StatusCode::OK, br#"{"hash":"abd"}"#, Some(&mac)), "a tampered body");
        assert!(!ok(TOKEN, StatusCode::NO_CONTENT, body, Some(&mac)), "another status");
        assert!(!ok(TOKEN, StatusCode::OK, body, None), "no MAC");
        let other = reconcilers::token::extension_token("key", "us-west");
        let theirs = response_mac(&other, "us-east", &nonce, 200, body);
        assert!(!ok(TOKEN, StatusCode::OK, body, Some(&theirs)), "another extension's token");
        let replayed = response_mac(TOKEN, "us-east", &"cd".repeat(16), 200, body);
        assert!(!ok(TOKEN, StatusCode::OK, body, Some(&replayed)), "an answer to another request");
        let nonces: BTreeSet<String> = (0..100).map(|_| random_nonce().unwrap()).collect();
        assert_eq!(nonces.len(), 100);
        assert!(nonces.iter().all(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn requests_are_signed_and_never_carry_the_token() {
        let token = reconcilers::token::extension_token("key", "us-east");
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let addr = serve(move |request| {
            record.lock().unwrap().push(request.to_owned());
            let nonce = authorization(request).nonce;
            let mac = response_mac(&reconcilers::token::extension_token("key", "us-east"), "us-east", &nonce, 204, b"");
            format!("HTTP/1.1 204 No Content\r\n{RESPONSE_MAC_HEADER}: {mac}\r\nconnection: close\r\n\r\n")
        })
        .await;
        let core = CoreClient::new(&Settings { token: token.clone(), ..settings(&addr.to_string()) }).unwrap();
        assert_eq!(core.config(HASH, 7).await.unwrap(), None);
        assert_eq!(core.config(HASH, 7).await.unwrap(), None);
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        let target = format!("/v1/extensions/us-east/config?after={HASH}&generation=7");
        let mut nonces = BTreeSet::new();
        for request in &requests {
            assert!(request.starts_with(&format!("GET {target} HTTP/1.1")), "{request}");
            assert!(!request.contains(&token) && !request.contains("Bearer"), "the token on the wire: {request}");
            let auth = authorization(request);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert!(auth.timestamp.abs_diff(now) < 10);
            let signed = SignedRequest {
                extension: "us-east",
                method: "GET",
                target: &target,
                timestamp: auth.timestamp,
                nonce: &auth.nonce,
                body: b"",
            };
            assert_eq!(auth.mac, request_mac(&token, &signed));
            nonces.insert(auth.nonce);
        }
        assert_eq!(nonces.len(), 2, "a fresh nonce each time");
    }

    #[tokio::test]
    async fn answers_without_the_cores_mac_are_passed_over_and_never_used() {
        let config = serde_json::to_string(&delivery(HASH, 9)).unwrap();
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        let path = "/v1/extensions/us-east/config";
        let the_core = {
            let config = config.clone();
            serve(move |r| signed(r, Signing::Valid, "200 OK", "", &config)).await
        };
        for signing in [Signing::None, Signing::TamperedBody, Signing::OtherToken, Signing::Replayed] {
            let evil =
                serde_json::to_string(&Delivery { proxy_service: "victim".into(), ..delivery(HASH, 10) }).unwrap();
            let impostor = serve(move |r| signed(r, signing, "200 OK", "", &evil)).await;
            let err = core.call_first_writer(&[impostor], Method::GET, path, Bytes::new()).await.unwrap_err();
            assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
            assert!(err.to_string().contains("no address of interlock:8080 answered as the core"), "{err}");
            let (status, body) =
                core.call_first_writer(&[impostor, the_core], Method::GET, path, Bytes::new()).await.unwrap();
            assert_eq!(
                (status, &body[..]),
                (StatusCode::OK, config.as_bytes()),
                "the core's answer, not the impostor's"
            );
            // A standby's 503 counts only when signed too.
            let fake_standby =
                serve(move |r| signed(r, signing, "503 Service Unavailable", "x-interlock-writer: evil\r\n", "")).await;
            let err = core.call_first_writer(&[fake_standby], Method::GET, path, Bytes::new()).await.unwrap_err();
            assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
        }
        assert!(core.not_core.load(Ordering::Relaxed) >= 12);
    }

    #[tokio::test]
    async fn standby_replicas_are_passed_over_for_the_writer() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        let standby = serve(|r| {
            signed(r, Signing::Valid, "503 Service Unavailable", "x-interlock-writer: manager-2\r\n", "standby\n")
        })
        .await;
        let writer = serve(|r| signed(r, Signing::Valid, "204 No Content", "", "")).await;
        let (status, _) = core
            .call_first_writer(&[standby, writer], Method::GET, "/v1/extensions/us-east/config", Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(*core.writer.lock().unwrap(), Some(writer), "remembered, to be tried first");

        let unknown =
            serve(|r| signed(r, Signing::Valid, "503 Service Unavailable", "x-interlock-writer: \r\n", "")).await;
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
        let busy = serve(|r| signed(r, Signing::Valid, "503 Service Unavailable", "", "busy\n")).await;
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
        // Only a task the last pass listed may report.
        let refused = core.report(&report).await.unwrap_err();
        assert!(refused.to_string().contains("no pass yet"), "{refused}");
        deliveries.set_tasks("us-east", BTreeMap::from([("t1".to_owned(), "n".to_owned())]));
        core.report(&report).await.unwrap();
        assert_eq!(deliveries.tasks("us-east")["t1"], report);
        // The core cannot sign its refusal with a token it does not know: not the core, as far as
        // the extension can tell, and said so with the status.
        let other =
            CoreClient::new(&Settings { extension: "us-west".into(), token, ..settings(&addr.to_string()) }).unwrap();
        let refused = other.config("", 0).await.unwrap_err();
        assert!(matches!(refused, CoreError::NotCore { .. }), "a token opens its own cluster only: {refused}");
        assert!(refused.to_string().contains("401"), "{refused}");
        server.abort();
    }
}
