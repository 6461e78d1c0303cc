//! What the loop knows, served over HTTP on `ListenAddr` and logged when it changes:
//! quarantined services, held clusters, failing clusters, and for hitless clusters the config
//! served and each proxy task's report. The same listener is the core's endpoint that extension
//! services are told about (`/v1/extensions/…`, see [`crate::delivery`]).
//!
//! | path | answer |
//! | --- | --- |
//! | `/health` | 200 while the loop finishes passes (liveness, [`liveness_bound`]); else 503 |
//! | `/ready` | 200 once a pass has read the swarm and the last pass did; else 503 with the reason |
//! | `/status` | [`Status`] as JSON (what `interlock status` prints as a table, [`table`]) |
//! | `/metrics` | the [`Metrics`] in Prometheus text format (OpenMetrics when `Accept` asks for it) |
//!
//! `/status` and `/metrics` name tenants' services, hosts and quarantine reasons: they are the
//! operator's, answered to loopback peers (the core's container or host) or with the
//! `INTERLOCK_ADMIN_TOKEN` as a Bearer token, else 403. `/health` and `/ready`
//! are open (Swarm's healthcheck, load balancers). The listener faces the network, so it bounds
//! what a client can hold ([`Limits`]): the time to send a request's headers, the connections
//! open at once, and it backs off when `accept` fails (out of descriptors).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use reconcilers::plan::Plan;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::delivery::{Deliveries, TaskReport};
use crate::metrics::{self, Metrics};

/// The state of the last pass, per extension.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Status {
    /// Passes run, including those that could not read the swarm.
    pub passes: u64,
    /// Writes done by all passes.
    pub writes: u64,
    /// Unix time (seconds) the last pass that read the swarm ended; none until one has.
    pub last_success: Option<u64>,
    /// Why the last pass could not run, until one does.
    pub pass_error: Option<String>,
    /// When several replicas run: `standby` (the replica on the Raft leader writes; its node in
    /// `leader`) or `active`. Absent for a lone core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    pub extensions: BTreeMap<String, ExtensionStatus>,
    /// When the loop last finished a pass (or started, before the first): `/health` fails once
    /// that is longer ago than `liveness_bound`.
    #[serde(skip)]
    pub heartbeat: Option<std::time::Instant>,
    #[serde(skip)]
    pub liveness_bound: Option<Duration>,
}

/// How long the loop may go without finishing a pass before `/health` fails and Swarm (the
/// stack's healthcheck) replaces the core: five PollIntervals, and at least 90 s (a pass's
/// Docker calls are each bounded at 30 s, so a slow engine alone never trips it).
pub fn liveness_bound(poll: Duration) -> Duration {
    (poll * 5).max(Duration::from_secs(90))
}

/// Whether the loop is alive at `now`: it finished a pass (whether or not it read the swarm:
/// an engine that is down is no reason to restart the core) within its bound.
pub fn liveness(status: &Status, now: std::time::Instant) -> Result<(), String> {
    match (status.heartbeat, status.liveness_bound) {
        (Some(beat), Some(bound)) if now.saturating_duration_since(beat) > bound => Err(format!(
            "no pass has finished for {} s (bound {} s): the loop is stuck",
            now.saturating_duration_since(beat).as_secs(),
            bound.as_secs()
        )),
        _ => Ok(()),
    }
}

/// Records that the loop is alive now, bound unchanged: a pass calls it after each proxy
/// config check, so a long culprit search over a large config is not taken for a stuck loop.
pub fn beat(status: &SharedStatus) {
    status.lock().expect("status lock").heartbeat = Some(std::time::Instant::now());
}

/// Records that the loop is alive now, with its bound.
pub fn heartbeat(status: &SharedStatus, bound: Duration) {
    let mut current = status.lock().expect("status lock");
    current.heartbeat = Some(std::time::Instant::now());
    current.liveness_bound = Some(bound);
}

/// Why an extension's routes are not all as the labels ask.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ExtensionStatus {
    /// `service: reason`.
    pub quarantined: Vec<String>,
    /// Writes the plan will not make (a rejected config, a name clash).
    pub held: Vec<String>,
    /// The last write failure, while the extension backs off.
    pub failure: Option<String>,
    /// Hitless: the hash of the config served to the extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_config: Option<String>,
    /// Hitless: per proxy task, the config it runs and since when, as its extension reported.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, TaskReport>,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Records a pass; logs every problem that appeared (warn) or went away (info) since the last.
pub fn record(status: &SharedStatus, plan: &Plan, failures: &BTreeMap<String, String>, writes: usize) {
    let mut next: BTreeMap<String, ExtensionStatus> = BTreeMap::new();
    for (name, cluster) in &plan.clusters {
        let line = |q: &reconcilers::routes::Quarantined| format!("{}: {}", q.service, q.reason);
        next.insert(
            name.clone(),
            ExtensionStatus {
                quarantined: cluster.quarantined.iter().map(line).collect(),
                held: cluster.conflicts.clone(),
                failure: failures.get(name).cloned(),
                ..ExtensionStatus::default()
            },
        );
    }
    let mut current = status.lock().expect("status lock");
    for (name, ext) in &next {
        let before = current.extensions.get(name).cloned().unwrap_or_default();
        for (now, then, what) in
            [(&ext.quarantined, &before.quarantined, "quarantined"), (&ext.held, &before.held, "held")]
        {
            for problem in now.iter().filter(|p| !then.contains(p)) {
                warn!(extension = %name, "{what}: {problem}");
            }
            for fixed in then.iter().filter(|p| !now.contains(p)) {
                info!(extension = %name, "no longer {what}: {fixed}");
            }
        }
    }
    current.passes += 1;
    current.writes += writes as u64;
    current.last_success = Some(unix_now());
    current.pass_error = None;
    current.extensions = next;
}

/// Records whether the pass was a standby's (`Some(leader)`) or an active replica's.
pub fn record_role(status: &SharedStatus, standby: Option<&str>, replicated: bool) {
    let mut current = status.lock().expect("status lock");
    if !replicated {
        return;
    }
    current.role = Some(if standby.is_some() { "standby" } else { "active" }.to_owned());
    current.leader = standby.filter(|l| !l.is_empty()).map(str::to_owned);
}

/// Records a pass that could not run (the swarm could not be read); the last known state of
/// each extension stays.
pub fn record_failed_pass(status: &SharedStatus, error: &str) {
    let mut current = status.lock().expect("status lock");
    current.passes += 1;
    current.pass_error = Some(error.to_owned());
}

/// Whether the operator is ready: a pass has read the swarm and the last pass did. `Err`
/// says why not.
pub fn readiness(status: &Status) -> Result<(), String> {
    match (&status.pass_error, status.last_success) {
        (Some(error), _) => Err(format!("the last pass could not read the swarm: {error}")),
        (None, None) => Err("no pass has read the swarm yet".to_owned()),
        (None, Some(_)) => Ok(()),
    }
}

/// What the listener serves: the loop's status, the hitless deliveries, the metrics.
#[derive(Clone, Default)]
pub struct Endpoints {
    pub status: SharedStatus,
    pub deliveries: Arc<Deliveries>,
    pub metrics: Arc<Metrics>,
}

/// Serves `status` and `deliveries` on `addr` with metrics of its own (all zero); the loop
/// serves its context's with [`serve_endpoints`].
pub async fn serve(addr: String, status: SharedStatus, deliveries: Arc<Deliveries>) {
    serve_endpoints(addr, Endpoints { status, deliveries, metrics: Arc::default() }).await;
}

/// Serves `/health`, `/ready`, `/status`, `/metrics` and the extensions' API on `addr` until the
/// task is aborted. A port already taken is logged, not fatal: the loop matters more than its
/// window.
pub async fn serve_endpoints(addr: String, endpoints: Endpoints) {
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!("status endpoint not served: cannot listen on {addr}: {e}");
            return;
        }
    };
    info!("status on http://{addr}/status, metrics on /metrics");
    serve_on(listener, endpoints).await;
}

/// How the listener holds under abuse: what a connection may cost it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers must have arrived this long after the connection opened or the last
    /// answer was sent, else the connection is closed: half-sent requests (slowloris) and idle
    /// keep-alive connections hold nothing for longer. A long poll is not affected: its
    /// headers arrived at once.
    pub header_timeout: Duration,
    /// Connections open at once. Beyond it, a new connection takes the place of the oldest one
    /// still waiting for its request's headers, or is closed at once if every one is in a
    /// request: stalled connections cannot lock out `/health` or the extensions.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(10), max_connections: 1_024 }
    }
}

/// A connection's request head and buffered data at most (hyper's default is ~400 KiB): the
/// largest request is a 64 KiB report, which streams through.
const MAX_BUF: usize = 64 * 1024;
/// After a failed `accept` (EMFILE, ENFILE, ENOBUFS…), the first wait, doubled up to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// The connection cap's log line comes at most this often.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);
/// The environment variable holding the token that opens `/status` and `/metrics` to others
/// than loopback peers.
pub const ADMIN_TOKEN_ENV: &str = "INTERLOCK_ADMIN_TOKEN";

/// [`serve_endpoints`] on a listener already bound (tests bind port 0), with the default
/// [`Limits`].
pub async fn serve_on(listener: tokio::net::TcpListener, endpoints: Endpoints) {
    serve_on_with(listener, endpoints, Limits::default()).await;
}

/// [`serve_on`] with `limits`.
pub async fn serve_on_with(listener: tokio::net::TcpListener, endpoints: Endpoints, limits: Limits) {
    let admin: Option<Arc<str>> = std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()).map(Arc::from);
    let connections = Arc::new(Connections::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_BUF);
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(e) => {
                // Out of descriptors, most likely: accepting again at once would spin.
                warn!("cannot accept a connection: {e}; trying again in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        // The peer as the socket says (no header can claim loopback).
        let peer = peer.ip().to_canonical();
        // Loopback (the stack's healthcheck, `interlock status`) always gets in: filling the
        // listener from the network must not fail the liveness check and restart the core.
        let Some(slot) = connections.admit(peer.is_loopback()) else {
            drop(stream);
            continue;
        };
        let (endpoints, admin, http) = (endpoints.clone(), admin.clone(), http.clone());
        tokio::spawn(async move {
            let conn = slot.conn.clone();
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let (endpoints, admin, conn) = (endpoints.clone(), admin.clone(), conn.clone());
                async move {
                    conn.waiting.store(false, Ordering::Relaxed);
                    let response = if request.uri().path().starts_with("/v1/extensions/") {
                        crate::delivery::respond(&endpoints.deliveries, request).await
                    } else {
                        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
                        let path = request.uri().path();
                        match admitted(path, peer, header(hyper::header::AUTHORIZATION), admin.as_deref()) {
                            Ok(()) => respond(path, header(hyper::header::ACCEPT).unwrap_or_default(), &endpoints),
                            Err(reason) => plain(403, reason),
                        }
                    };
                    Ok::<_, Infallible>(response.map(|body| Tracked { body, _idle: Idle(conn) }))
                }
            });
            tokio::select! {
                _ = http.serve_connection(TokioIo::new(stream), service) => {}
                () = slot.conn.close.notified() => {}
            }
        });
    }
}

/// Whether `path` may be answered to `peer`. `/status` (tenants' service names, hosts,
/// quarantine reasons) and `/metrics` (per-service series) are the operator's: for loopback
/// peers (the core's own container or host, where the stack's healthcheck and `interlock
/// status` run), or with `Authorization: Bearer` and the token in [`ADMIN_TOKEN_ENV`] when the
/// core has one. `Err`: the one-line reason.
fn admitted(path: &str, peer: IpAddr, authorization: Option<&str>, admin: Option<&str>) -> Result<(), String> {
    if !matches!(path, "/status" | "/metrics") || peer.to_canonical().is_loopback() {
        return Ok(());
    }
    let sent = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
    if let (Some(admin), Some(sent)) = (admin, sent) {
        // Compared as MACs, in constant time: neither the content nor the length leaks.
        let digest = |t: &str| reconcilers::token::hmac_sha256(b"interlock admin token", t.as_bytes());
        if digest(admin).iter().zip(digest(sent)).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
            return Ok(());
        }
    }
    Err(match (admin, sent) {
        (Some(_), Some(_)) => format!("{path}: not the core's {ADMIN_TOKEN_ENV}\n"),
        (Some(_), None) => format!(
            "{path} is the operator's: ask from the core's host or container (loopback), or send Authorization: Bearer with the core's {ADMIN_TOKEN_ENV}\n"
        ),
        (None, _) => format!(
            "{path} is the operator's: ask from the core's host or container (loopback), or set {ADMIN_TOKEN_ENV} on the core and send it as Authorization: Bearer\n"
        ),
    })
}

/// The listener's open connections, oldest first, and what the cap turned away.
struct Connections {
    limit: usize,
    open: Mutex<(u64, BTreeMap<u64, Arc<Conn>>)>,
    /// Since the cap's last log line: connections closed at once, and waiting ones closed to
    /// make room.
    refused: AtomicU64,
    evicted: AtomicU64,
    logged: Mutex<Option<std::time::Instant>>,
}

/// One connection's state as the cap sees it.
struct Conn {
    /// Waiting for a request's headers (not yet sent, or idle after an answer): may be closed
    /// to make room. A connection in a request (a long poll) never is.
    waiting: AtomicBool,
    close: tokio::sync::Notify,
}

/// A connection's place in [`Connections`], given up when its task ends.
struct Slot {
    id: u64,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.lock().expect("connections lock").1.remove(&self.id);
    }
}

impl Connections {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            open: Mutex::default(),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            logged: Mutex::new(None),
        }
    }

    /// A slot for a new connection: at the cap, the oldest waiting connection's, else none;
    /// `exempt` (a loopback peer) always gets one, past the cap if need be.
    fn admit(self: &Arc<Self>, exempt: bool) -> Option<Slot> {
        let mut open = self.open.lock().expect("connections lock");
        let (next, conns) = &mut *open;
        if conns.len() >= self.limit && !exempt {
            let oldest = conns.iter().find(|(_, c)| c.waiting.load(Ordering::Relaxed)).map(|(id, _)| *id);
            match oldest.and_then(|id| conns.remove(&id)) {
                Some(evicted) => {
                    evicted.close.notify_one();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    drop(open);
                    self.log_cap();
                    return None;
                }
            }
            self.log_cap();
        }
        *next += 1;
        let conn = Arc::new(Conn { waiting: AtomicBool::new(true), close: tokio::sync::Notify::new() });
        conns.insert(*next, conn.clone());
        Some(Slot { id: *next, conn, connections: self.clone() })
    }

    /// Logs what the cap did, at most every [`CAP_LOG_EVERY`].
    fn log_cap(&self) {
        let mut logged = self.logged.lock().expect("cap log lock");
        if logged.is_some_and(|at| at.elapsed() < CAP_LOG_EVERY) {
            return;
        }
        *logged = Some(std::time::Instant::now());
        let refused = self.refused.swap(0, Ordering::Relaxed);
        let evicted = self.evicted.swap(0, Ordering::Relaxed);
        warn!(
            "{} connections open, the cap: {evicted} connections waiting for a request closed to make room and {refused} new ones closed at once (every connection busy) since the last such line",
            self.limit
        );
    }
}

/// Marks its connection waiting again once dropped: when the answer has been sent.
struct Idle(Arc<Conn>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.waiting.store(true, Ordering::Relaxed);
    }
}

/// An answer's body, holding its connection's [`Idle`] until hyper has written it.
struct Tracked {
    body: Full<Bytes>,
    _idle: Idle,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn plain(code: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn respond(path: &str, accept: &str, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    let status = || endpoints.status.lock().expect("status lock").clone();
    let (code, content_type, body) = match path {
        "/health" => match liveness(&status(), std::time::Instant::now()) {
            Ok(()) => (200, "text/plain", "ok\n".to_owned()),
            Err(reason) => (503, "text/plain", format!("not live: {reason}\n")),
        },
        "/ready" => match readiness(&status()) {
            Ok(()) => (200, "text/plain", "ready\n".to_owned()),
            Err(reason) => (503, "text/plain", format!("not ready: {reason}\n")),
        },
        "/status" => {
            let mut snapshot = status();
            for (name, ext) in &mut snapshot.extensions {
                ext.served_config = endpoints.deliveries.current(name).map(|d| d.hash.clone());
                ext.tasks = endpoints.deliveries.tasks(name);
            }
            let json = serde_json::to_string_pretty(&snapshot).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            (200, "application/json", json + "\n")
        }
        "/metrics" => {
            let extensions: Vec<String> = status().extensions.into_keys().collect();
            endpoints.metrics.refresh_task_ages(
                &endpoints.deliveries,
                extensions.iter().map(String::as_str),
                unix_now(),
            );
            if accept.contains("application/openmetrics-text") {
                (200, metrics::OPENMETRICS_TEXT, endpoints.metrics.encode_openmetrics())
            } else {
                (200, metrics::PROMETHEUS_TEXT, endpoints.metrics.encode())
            }
        }
        _ => (404, "text/plain", "not found; try /status, /metrics, /ready or /health\n".to_owned()),
    };
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Why `interlock status` could not get the status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}: not an http://HOST:PORT URL (https is not served)")]
    Url(String),
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the HTTP exchange failed")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: no answer within {} s", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url} answered {code}: {body}")]
    Code { url: String, code: u16, body: String },
    #[error("{url}: not a status document")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How long `interlock status` waits for the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /status` from a running core at `url` (`http://HOST:PORT` or `HOST:PORT`; a path is
/// ignored).
pub async fn fetch(url: &str) -> Result<Status, StatusError> {
    let (_, body) = get(url, "/status", true).await?;
    serde_json::from_slice(&body).map_err(|source| StatusError::Json { url: format!("{url}/status"), source })
}

/// `GET /health` from a running core at `url`: `Ok` when it answers 200.
pub async fn health(url: &str) -> Result<(), StatusError> {
    get(url, "/health", true).await.map(|_| ())
}

/// `GET path` at `url`; with `ok_only`, an answer other than 200 is an error.
async fn get(url: &str, path: &str, ok_only: bool) -> Result<(u16, Bytes), StatusError> {
    // `http://` may be left out; no other scheme is served.
    let authority = url
        .strip_prefix("http://")
        .or_else(|| (!url.contains("://")).then_some(url))
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .filter(|a| a.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()))
        .ok_or_else(|| StatusError::Url(url.to_owned()))?
        .to_owned();
    let target = format!("http://{authority}{path}");
    let get = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|source| StatusError::Connect { url: target.clone(), source })?;
        let http = |source| StatusError::Http { url: target.clone(), source };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(connection);
        let mut request = Request::get(path).header(hyper::header::HOST, &authority);
        // Away from the core's host, `/status` needs the operator's token (see `admitted`).
        if let Some(token) = std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()) {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::new())).expect("a valid request");
        let response = sender.send_request(request).await.map_err(http)?;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((code, body))
    };
    let (code, body) =
        tokio::time::timeout(TIMEOUT, get).await.map_err(|_| StatusError::Timeout { url: target.clone() })??;
    if ok_only && code != 200 {
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        return Err(StatusError::Code { url: target, code, body });
    }
    Ok((code, body))
}

/// The status as `interlock status` prints it: a summary line; per extension the number of
/// quarantined services, held writes and failures, and the config served to hitless
/// extensions; the reasons; and per hitless proxy task its config hash, age and reload time.
/// `now_unix` ages the timestamps.
pub fn table(status: &Status, now_unix: u64) -> String {
    let ago = |t: u64| format!("{} ago", age(now_unix.saturating_sub(t)));
    let mut out = format!("passes {}, writes {}", status.passes, status.writes);
    match (&status.pass_error, status.last_success) {
        (Some(error), _) => out.push_str(&format!(", last pass FAILED: {error}")),
        (None, Some(t)) => out.push_str(&format!(", last pass {}", ago(t))),
        (None, None) => out.push_str(", no pass yet"),
    }
    out.push_str("\n\n");
    let mut rows = vec![["EXTENSION", "QUARANTINED", "HELD", "FAILURES", "SERVED CONFIG"].map(str::to_owned).to_vec()];
    for (name, ext) in &status.extensions {
        rows.push(vec![
            name.clone(),
            ext.quarantined.len().to_string(),
            ext.held.len().to_string(),
            usize::from(ext.failure.is_some()).to_string(),
            ext.served_config.as_deref().map_or("-".to_owned(), short),
        ]);
    }
    out.push_str(&columns(&rows));
    for (name, ext) in &status.extensions {
        let problems = [("quarantined", &ext.quarantined), ("held", &ext.held)];
        for (what, lines) in problems.into_iter().filter(|(_, lines)| !lines.is_empty()) {
            out.push_str(&format!("\n{name}: {what}\n"));
            for line in lines {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if let Some(failure) = &ext.failure {
            out.push_str(&format!("\n{name}: failing\n  {failure}\n"));
        }
    }
    for (name, ext) in status.extensions.iter().filter(|(_, ext)| !ext.tasks.is_empty()) {
        out.push_str(&format!("\n{name}: proxy tasks\n"));
        let mut rows = vec![["TASK", "NODE", "CONFIG", "AGE", "RELOAD", "REJECTED"].map(str::to_owned).to_vec()];
        for task in ext.tasks.values() {
            let rejected = match (&task.rejected, &task.error) {
                (Some(hash), Some(error)) => format!("{}: {error}", short(hash)),
                (Some(hash), None) => short(hash),
                (None, Some(error)) => error.clone(),
                (None, None) => "-".to_owned(),
            };
            let current = ext.served_config.as_deref().is_none_or(|served| served == task.hash);
            let hash = if current { short(&task.hash) } else { format!("{} (not the served one)", short(&task.hash)) };
            rows.push(vec![
                short(&task.task),
                task.node.clone(),
                hash,
                age(now_unix.saturating_sub(task.applied_at)),
                format!("{} ms", task.took_ms),
                rejected,
            ]);
        }
        out.push_str(&columns(&rows).lines().map(|l| format!("  {l}\n")).collect::<String>());
    }
    out
}

/// A hash or ID cut to 12 characters, as `docker` prints them.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `45s`, `3m20s`, `2h05m`, `3d04h`.
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// Rows as left-aligned columns two spaces apart, without trailing spaces.
fn columns(rows: &[Vec<String>]) -> String {
    let width = |i: usize| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0);
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len)).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::plan::ClusterPlan;
    use reconcilers::routes::Quarantined;

    #[test]
    fn records_quarantines_and_serves_them() {
        let endpoints = Endpoints::default();
        let mut plan = Plan::default();
        plan.clusters.insert(
            "us-east".into(),
            ClusterPlan {
                quarantined: vec![Quarantined { service: "bad".into(), reason: "port".into() }],
                ..ClusterPlan::default()
            },
        );
        assert_eq!(respond("/ready", "", &endpoints).status(), 503, "no pass yet");
        record(&endpoints.status, &plan, &BTreeMap::new(), 2);
        let response = respond("/status", "", &endpoints);
        assert_eq!(response.status(), 200);
        let snapshot = endpoints.status.lock().unwrap().clone();
        assert_eq!(snapshot.writes, 2);
        assert_eq!(snapshot.extensions["us-east"].quarantined, ["bad: port"]);
        assert_eq!(respond("/health", "", &endpoints).status(), 200);
        assert_eq!(respond("/ready", "", &endpoints).status(), 200);
        assert_eq!(respond("/nope", "", &endpoints).status(), 404);
        let metrics = respond("/metrics", "", &endpoints);
        assert_eq!(metrics.headers()["content-type"], metrics::PROMETHEUS_TEXT);
        let open = respond("/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5", &endpoints);
        assert_eq!(open.headers()["content-type"], metrics::OPENMETRICS_TEXT);
    }

    #[test]
    fn ready_once_a_pass_read_the_swarm_and_while_the_last_one_did() {
        let status = SharedStatus::default();
        assert_eq!(readiness(&status.lock().unwrap()), Err("no pass has read the swarm yet".to_owned()));
        record_failed_pass(&status, "connection refused");
        assert!(readiness(&status.lock().unwrap()).unwrap_err().contains("connection refused"));
        record(&status, &Plan::default(), &BTreeMap::new(), 0);
        assert_eq!(readiness(&status.lock().unwrap()), Ok(()));
        record_failed_pass(&status, "timed out");
        let reason = readiness(&status.lock().unwrap()).unwrap_err();
        assert_eq!(reason, "the last pass could not read the swarm: timed out");
    }

    /// `/status` as a hitless core serves it, read back and printed.
    const SAMPLE: &str = r#"{
      "passes": 42,
      "writes": 7,
      "last_success": 1000,
      "pass_error": null,
      "extensions": {
        "us-east": {
          "quarantined": ["broken: com.docker.lb.port=\"http\" is not a port number"],
          "held": [],
          "failure": null,
          "served_config": "3f2a9c1b7d0e55aa",
          "tasks": {
            "k3j2h1g0f9e8d7c6b5a4z3y2x": {
              "task": "k3j2h1g0f9e8d7c6b5a4z3y2x", "node": "lb-00", "container": "c1",
              "hash": "3f2a9c1b7d0e55aa", "applied_at": 995, "took_ms": 41
            },
            "m1n2b3v4c5x6z7l8k9j0h1g2f": {
              "task": "m1n2b3v4c5x6z7l8k9j0h1g2f", "node": "lb-01", "container": "c2",
              "hash": "0011223344556677", "rejected": "3f2a9c1b7d0e55aa",
              "error": "nginx -t rejects it", "applied_at": 700, "took_ms": 12
            }
          }
        },
        "us-west": {
          "quarantined": [],
          "held": ["config interlock-proxy-us-west-1 exists with other content than interlock rendered"],
          "failure": "create service interlock-proxy-us-west: no such network"
        }
      }
    }"#;

    #[test]
    fn the_status_table() {
        let status: Status = serde_json::from_str(SAMPLE).unwrap();
        let want = "\
passes 42, writes 7, last pass 10s ago

EXTENSION  QUARANTINED  HELD  FAILURES  SERVED CONFIG
us-east    1            0     0         3f2a9c1b7d0e
us-west    0            1     1         -

us-east: quarantined
  broken: com.docker.lb.port=\"http\" is not a port number

us-west: held
  config interlock-proxy-us-west-1 exists with other content than interlock rendered

us-west: failing
  create service interlock-proxy-us-west: no such network

us-east: proxy tasks
  TASK          NODE   CONFIG                             AGE    RELOAD  REJECTED
  k3j2h1g0f9e8  lb-00  3f2a9c1b7d0e                       15s    41 ms   -
  m1n2b3v4c5x6  lb-01  001122334455 (not the served one)  5m10s  12 ms   3f2a9c1b7d0e: nginx -t rejects it
";
        assert_eq!(table(&status, 1_010), want);
        // What the core serves reads back as the same document.
        let again: Status = serde_json::from_str(&serde_json::to_string(&status).unwrap()).unwrap();
        assert_eq!(again, status);
    }

    #[tokio::test]
    async fn fetch_takes_http_urls_only() {
        for bad in ["https://core:8080", "core", "http://:8080", "http://core:port"] {
            assert!(matches!(fetch(bad).await, Err(StatusError::Url(_))), "{bad}");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let refused = fetch(&format!("127.0.0.1:{port}/anything")).await.unwrap_err();
        assert_eq!(refused.to_string(), format!("cannot connect to http://127.0.0.1:{port}/status"));
    }

    #[test]
    fn status_and_metrics_are_the_operators() {
        let far: IpAddr = "10.0.0.7".parse().unwrap();
        for near in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            let near: IpAddr = near.parse().unwrap();
            assert_eq!(admitted("/status", near, None, None), Ok(()), "{near}");
            assert_eq!(admitted("/metrics", near, None, Some("secret")), Ok(()), "{near}");
        }
        for open in ["/health", "/ready", "/nope", "/v1/extensions/us-east/config"] {
            assert_eq!(admitted(open, far, None, None), Ok(()), "{open}");
        }
        let no_token = admitted("/status", far, Some("Bearer secret"), None).unwrap_err();
        assert!(no_token.contains("loopback") && no_token.contains("set INTERLOCK_ADMIN_TOKEN"), "{no_token}");
        assert_eq!(no_token.lines().count(), 1);
        assert_eq!(admitted("/status", far, Some("Bearer secret"), Some("secret")), Ok(()));
        assert_eq!(admitted("/metrics", far, Some("Bearer secret"), Some("secret")), Ok(()));
        assert!(
            admitted("/metrics", far, Some("Bearer secre"), Some("secret")).unwrap_err().contains("not the core's")
        );
        assert!(admitted("/metrics", far, Some("secret"), Some("secret")).unwrap_err().contains("send Authorization"));
        assert!(admitted("/status", far, None, Some("secret")).is_err());
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let connections = Arc::new(Connections::new(2));
        let first = connections.admit(false).unwrap();
        let second = connections.admit(false).unwrap();
        let third = connections.admit(false).expect("the oldest waiting one makes room");
        tokio::time::timeout(Duration::from_secs(1), first.conn.close.notified()).await.expect("told to close");
        assert_eq!(connections.open.lock().unwrap().1.keys().copied().collect::<Vec<_>>(), [second.id, third.id]);
        // In a request (a long poll): never closed to make room.
        second.conn.waiting.store(false, Ordering::Relaxed);
        third.conn.waiting.store(false, Ordering::Relaxed);
        assert!(connections.admit(false).is_none(), "every connection busy: the new one is closed");
        let healthcheck = connections.admit(true).expect("loopback gets in past the cap");
        drop(healthcheck);
        drop(first);
        assert_eq!(connections.open.lock().unwrap().1.len(), 2);
        drop(third);
        assert!(connections.admit(false).is_some(), "a slot freed");
    }

    /// Raises this process's open files limit to its hard limit; returns the limit.
    fn raise_open_files() -> libc::rlim_t {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: a plain libc call on a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        for want in [limit.rlim_max, 1 << 20, 65_536] {
            let raised = libc::rlimit { rlim_cur: want.min(limit.rlim_max), rlim_max: limit.rlim_max };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }

    /// `GET path` on a fresh connection: the status code and how long the whole exchange took.
    async fn timed_get(addr: std::net::SocketAddr, path: &str) -> (u16, Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let start = std::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: core\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let code = String::from_utf8_lossy(&answer).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, start.elapsed())
    }

    /// A signed long poll for us-east's config on its own connection (the extension's request).
    async fn long_poll(addr: std::net::SocketAddr, key: &str) -> u16 {
        use reconcilers::token::{Authorization, SignedRequest, extension_token, request_mac};
        let token = extension_token(key, "us-east");
        let target = "/v1/extensions/us-east/config?after=&generation=0";
        let (timestamp, nonce) = (unix_now(), "0123456789abcdef0123456789abcdef");
        let request = SignedRequest { extension: "us-east", method: "GET", target, timestamp, nonce, body: b"" };
        let auth = Authorization { timestamp, nonce: nonce.into(), mac: request_mac(&token, &request) };
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get(target)
            .header(hyper::header::HOST, "core")
            .header(hyper::header::AUTHORIZATION, auth.header())
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(request).await.unwrap().status().as_u16()
    }

    /// The real listener against 3,000 connections that send half a request and stall: `/health`
    /// keeps answering at once, a long poll outlives the header timeout, and the stalled
    /// connections are closed (the oldest to make room at the cap, the rest by the timeout).
    #[tokio::test(flavor = "multi_thread")]
    async fn the_listener_holds_under_3000_slow_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const SLOW: usize = 3_000;
        let files = raise_open_files();
        assert!(files >= 2 * SLOW as libc::rlim_t, "open files limited to {files}: this test needs {}", 2 * SLOW);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits { header_timeout: Duration::from_secs(2), ..Limits::default() };
        let endpoints = Endpoints::default();
        endpoints.deliveries.set_key("key".into());
        endpoints.deliveries.set_serving(crate::delivery::Serving::Writer);
        let server = tokio::spawn(serve_on_with(listener, endpoints.clone(), limits));
        let start = std::time::Instant::now();
        let poll = tokio::spawn(async move { (long_poll(addr, "key").await, start.elapsed()) });

        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut healths = Vec::new();
        let mut watchers = Vec::new();
        for n in 0..SLOW {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET /status HTTP/1.1\r\nHost: core\r\nX-Slow: ").await.unwrap();
            let closed = closed.clone();
            watchers.push(tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
                start.elapsed()
            }));
            if n % 500 == 499 {
                healths.push(timed_get(addr, "/health").await);
            }
        }
        let opened = start.elapsed();
        let closed_when_open = closed.load(Ordering::Relaxed);
        // Meanwhile, with the slow ones stalled.
        for _ in 0..10 {
            healths.push(timed_get(addr, "/health").await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The long poll is answered once there is a config, past the header timeout.
        tokio::time::sleep((limits.header_timeout + Duration::from_secs(1)).saturating_sub(start.elapsed())).await;
        assert!(!poll.is_finished(), "the long poll waits");
        endpoints.deliveries.publish(&reconcilers::desired::Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: "abc".into(),
            generation: 1,
            files: vec![],
            clear_dirs: vec![],
            check: vec![],
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
        });
        let (polled, polled_after) =
            tokio::time::timeout(Duration::from_secs(5), poll).await.expect("the long poll answered").unwrap();
        let deadline = opened + limits.header_timeout + Duration::from_secs(5);
        tokio::time::sleep(deadline.saturating_sub(start.elapsed())).await;
        let closed_by_deadline = closed.load(Ordering::Relaxed);
        let mut times: Vec<Duration> = Vec::new();
        for watcher in watchers {
            if watcher.is_finished() {
                times.push(watcher.await.unwrap());
            } else {
                watcher.abort();
            }
        }
        times.sort();
        let by_timeout = times.iter().filter(|t| **t >= limits.header_timeout).count();
        let healths_ms: Vec<String> =
            healths.iter().map(|(_, took)| format!("{:.1}", took.as_secs_f64() * 1e3)).collect();
        println!(
            "{SLOW} slow connections opened in {opened:.2?}, {closed_when_open} of them closed meanwhile to make room at the \
             cap; {closed_by_deadline} closed {deadline:.2?} after the first opened (the last opened + header timeout \
             {:?} + 5 s), {by_timeout} of them by the timeout, the last at {:.2?}; /health in ms: {}; a long poll \
             answered {polled} after {polled_after:.2?}",
            limits.header_timeout,
            times.last().copied().unwrap_or_default(),
            healths_ms.join(" "),
        );
        for (code, took) in &healths {
            assert_eq!(*code, 200);
            assert!(*took < Duration::from_millis(100), "/health took {took:?}");
        }
        assert_eq!(polled, 200, "the long poll got the config");
        assert!(polled_after > limits.header_timeout, "it outlived the header timeout");
        assert!(closed_by_deadline * 100 >= SLOW * 95, "only {closed_by_deadline} of {SLOW} closed");
        server.abort();
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits { header_timeout: Duration::from_secs(1), ..Limits::default() };
        let server = tokio::spawn(serve_on_with(listener, Endpoints::default(), limits));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: core\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Kept alive, then idle: closed once no request came within the timeout.
        let end = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("closed");
        assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
        let idle = start.elapsed();
        assert!(idle >= limits.header_timeout && idle < limits.header_timeout * 3, "{idle:?}");
        server.abort();
    }

    #[test]
    fn a_failed_pass_and_no_pass_are_said_first() {
        let mut status = Status { passes: 3, pass_error: Some("connection refused".into()), ..Status::default() };
        assert!(table(&status, 0).starts_with("passes 3, writes 0, last pass FAILED: connection refused\n"));
        status.pass_error = None;
        assert!(table(&status, 0).starts_with("passes 3, writes 0, no pass yet\n"));
        assert_eq!(age(59), "59s");
        assert_eq!(age(3_600 * 5 + 61), "5h01m");
        assert_eq!(age(86_400 * 2 + 3_600 * 4), "2d04h");
    }
}
