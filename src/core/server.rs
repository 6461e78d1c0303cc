//! The core's HTTP server on `ListenAddr`: what the loop knows ([`crate::core::status`]:
//! quarantined services, held clusters, failing clusters, and for hitless clusters the config
//! served and each proxy task's report), its liveness and readiness, and its metrics. The same
//! listener is the core's endpoint that extension services are told about (`/v1/extensions/…`,
//! see [`crate::core::delivery`]).
//!
//! | path | answer |
//! | --- | --- |
//! | `/health` | 200 while the loop finishes passes (liveness, [`liveness_bound`](crate::core::status::liveness_bound)); else 503 |
//! | `/ready` | 200 once a pass has read the swarm and the last pass did; else 503 with the reason |
//! | `/status` | [`Status`](crate::core::status::Status) as JSON (what `interlock status` prints as a table) |
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
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{info, warn};

use crate::core::delivery::{self, Deliveries};
use crate::core::metrics::{self, Metrics};
use crate::core::status::{ADMIN_TOKEN_ENV, SharedStatus, liveness, readiness, unix_now};
use crate::retry::Backoff;

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
const ACCEPT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
/// The connection cap's log line comes at most this often.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

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
    // Failed accepts in a row.
    let mut failures: u32 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                failures = 0;
                accepted
            }
            Err(e) => {
                // Out of descriptors, most likely: accepting again at once would spin.
                failures = failures.saturating_add(1);
                let backoff = ACCEPT_BACKOFF.delay(failures);
                warn!("cannot accept a connection: {e}; trying again in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
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
                        delivery::respond(&endpoints.deliveries, request).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::record;
    use reconcilers::plan::{ClusterPlan, Plan};
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
        endpoints.deliveries.set_serving(crate::core::delivery::Serving::Writer);
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
            checked_with: String::new(),
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
}
