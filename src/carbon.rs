//! Carbon (Graphite), the statistics sink of the `carbon` plug-in
//! ([`crate::core::plugins::carbon`]) and of `interlock agent`, the per-node stats agent
//! ([`crate::agent`]): both send through a [`CarbonSink`] configured by [`CarbonSettings`].
//!
//! Everything goes to Carbon in its plaintext protocol, one line per value
//! ([`line()`]: `PATH VALUE UNIX_SECONDS\n`).
//!
//! ```text
//!  plug-in (core) ──send(line)──┐                          (never blocks, never awaits)
//!  agent (every node) ─send────▶ CarbonSink: bounded buffer ──writer task──▶ one TCP connection
//!                                 (oldest dropped, counted)   reconnects with backoff
//! ```
//!
//! - **The sink** ([`CarbonSink`]): one long-lived connection to `STATS_CARBON_ADDRESS` (0.3
//!   dialled once per metric), written by its own task. [`CarbonSink::send`] only appends to a
//!   bounded buffer (10,000 lines by default): when Carbon is down the oldest lines are dropped and
//!   counted, nothing waits, and the buffer is sent when Carbon is back (dialled again after
//!   250 ms, doubling up to 5 s). A connection Carbon closed is noticed before the next write (a
//!   FIN is read), so sending resumes with the next batch; lines the kernel accepted just before
//!   Carbon died are lost (the protocol has no acknowledgement). A bare service name as host
//!   (`carbon:2003`) is tried as `tasks.carbon` first, which Docker's DNS answers with the
//!   service's task addresses, so a Carbon service works without IPVS and in VIP or dnsrr mode.
//! - **Settings** ([`CarbonSettings`]): 0.3's environment (`STATS_CARBON_ADDRESS`,
//!   `STATS_PREFIX`, `STATS_IMAGE_NAME_FILTER`, `STATS_INTERVAL`), or the same values from the
//!   TOML.
//!
//! Names: each path component interlock makes from a name (node, container, extension) goes
//! through [`sanitize`]: every character but ASCII letters, digits, `-` and `_` becomes `_`, so a
//! container `web.1.x2k` is one component `web_1_x2k`, not three levels.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::retry::Backoff;

/// `HOST:PORT` of Carbon's plaintext receiver (usually port 2003).
pub const ENV_ADDRESS: &str = "STATS_CARBON_ADDRESS";
/// The first components of every path (default [`DEFAULT_PREFIX`]).
pub const ENV_PREFIX: &str = "STATS_PREFIX";
/// A regular expression; containers whose image it matches (anywhere in the name) are measured.
pub const ENV_IMAGE_NAME_FILTER: &str = "STATS_IMAGE_NAME_FILTER";
/// Seconds between two readings (default 10).
pub const ENV_INTERVAL: &str = "STATS_INTERVAL";

pub const DEFAULT_PREFIX: &str = "docker.stats";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Lines a sink buffers while Carbon is slow or away.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Lines written in one go.
const MAX_BATCH: usize = 1_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that takes longer (Carbon accepts but does not read) drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why Carbon settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarbonError {
    #[error("{ENV_ADDRESS} is not set: the Carbon (Graphite) plaintext receiver, e.g. graphite:2003")]
    MissingAddress,
    #[error("Carbon address {address:?} is not HOST:PORT ({reason})")]
    Address { address: String, reason: String },
    #[error("{ENV_PREFIX}={prefix:?}: use dot-separated words of letters, digits, `-` and `_`")]
    Prefix { prefix: String },
    #[error("{ENV_IMAGE_NAME_FILTER}={filter:?} is not a regular expression: {reason}")]
    Filter { filter: String, reason: String },
    #[error("{ENV_INTERVAL}={value:?}: give a whole number of seconds, at least 1")]
    Interval { value: String },
    #[error("the Carbon sink needs a Tokio runtime to run its writer on")]
    NoRuntime,
}

/// Where and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonSettings {
    /// Carbon's plaintext receiver, `HOST:PORT`.
    pub address: String,
    /// The first components of every path.
    pub prefix: String,
    /// A regular expression matched anywhere in a container's image name; `None`: every
    /// container (0.3's default).
    pub image_name_filter: Option<String>,
    /// Time between two readings of the containers (the agent's).
    pub interval: Duration,
}

impl Default for CarbonSettings {
    /// No address (it must be given), 0.3's defaults for the rest.
    fn default() -> Self {
        Self {
            address: String::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            image_name_filter: None,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl CarbonSettings {
    /// From Interlock 0.3's variables: [`ENV_ADDRESS`] (required), [`ENV_PREFIX`],
    /// [`ENV_IMAGE_NAME_FILTER`], [`ENV_INTERVAL`]; validated. An empty variable counts as unset.
    pub fn from_env() -> Result<Self, CarbonError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, CarbonError> {
        let var = |name| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut settings = Self { address: var(ENV_ADDRESS).ok_or(CarbonError::MissingAddress)?, ..Self::default() };
        if let Some(prefix) = var(ENV_PREFIX) {
            settings.prefix = prefix;
        }
        settings.image_name_filter = var(ENV_IMAGE_NAME_FILTER);
        if let Some(value) = var(ENV_INTERVAL) {
            settings.interval = match value.parse::<u64>() {
                Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                _ => return Err(CarbonError::Interval { value }),
            };
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value (for settings built from the TOML).
    pub fn validate(&self) -> Result<(), CarbonError> {
        parse_address(&self.address)?;
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.split('.').all(|c| !c.is_empty() && c.chars().all(|c| is_safe(c) || c == '_'));
        if !prefix_ok {
            return Err(CarbonError::Prefix { prefix: self.prefix.clone() });
        }
        self.image_filter()?;
        if self.interval.is_zero() {
            return Err(CarbonError::Interval { value: "0".to_owned() });
        }
        Ok(())
    }

    /// The image filter, compiled (no filter: one that matches every name).
    pub fn image_filter(&self) -> Result<Regex, CarbonError> {
        let filter = self.image_name_filter.as_deref().unwrap_or("");
        Regex::new(filter).map_err(|e| CarbonError::Filter { filter: filter.to_owned(), reason: e.to_string() })
    }
}

/// `HOST:PORT` split, the port checked (`[v6]:port` accepted).
fn parse_address(address: &str) -> Result<(&str, u16), CarbonError> {
    let bad = |reason: &str| CarbonError::Address { address: address.to_owned(), reason: reason.to_owned() };
    if address.is_empty() {
        return Err(CarbonError::MissingAddress);
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is not 1 to 65535"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(bad("no host name or address"));
    }
    Ok((host, port))
}

/// Where to try to connect, in order: `tasks.NAME:PORT` first when the host is a bare name
/// (a Swarm service's; Docker's DNS answers it with the task addresses), then the address.
fn candidates(address: &str) -> Vec<String> {
    let Ok((host, port)) = parse_address(address) else { return vec![address.to_owned()] };
    let bare = !host.contains('.') && !host.contains(':') && host != "localhost";
    let mut out = Vec::with_capacity(2);
    if bare {
        out.push(format!("tasks.{host}:{port}"));
    }
    out.push(address.to_owned());
    out
}

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// One path component from any name: every character but ASCII letters, digits, `-` and `_`
/// becomes `_` (dots would make levels, spaces and newlines would break the protocol, `/` the
/// whisper file path); empty becomes `_`.
pub fn sanitize(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars().map(|c| if is_safe(c) { c } else { '_' }).collect()
}

/// One plaintext-protocol line: `PATH VALUE UNIX_SECONDS\n`.
pub fn line(path: &str, value: impl fmt::Display, unix_seconds: u64) -> String {
    format!("{path} {value} {unix_seconds}\n")
}

/// Unix seconds now.
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// How a sink buffers and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Lines buffered at most; beyond it the oldest are dropped.
    pub capacity: usize,
    /// The first wait after a failed connection, doubled on each further failure...
    pub min_backoff: Duration,
    /// ...up to this: how long after Carbon is back sending resumes, at worst.
    pub max_backoff: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a sink has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Lines waiting to be written.
    pub queued: usize,
    /// Lines written to a connection.
    pub sent: u64,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    /// Connections opened.
    pub connections: u64,
}

/// A handle to one Carbon connection and its buffer. Cheap to clone; when the last clone is
/// dropped the writer sends what it can (one attempt) and stops.
#[derive(Clone)]
pub struct CarbonSink {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
}

impl fmt::Debug for CarbonSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarbonSink").field("address", &self.shared.address).field("stats", &self.stats()).finish()
    }
}

/// What the handles and the writer share.
struct Shared {
    address: String,
    options: SinkOptions,
    queue: Mutex<VecDeque<String>>,
    /// A line was queued, or the sink closed.
    wake: Notify,
    /// The sink closed (ends a backoff wait early).
    closing: Notify,
    closed: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    connections: AtomicU64,
}

/// Closes the sink when the last handle goes.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
        self.0.closing.notify_one();
    }
}

impl CarbonSink {
    /// Starts the writer for `address` (`HOST:PORT`) on the current Tokio runtime, with the
    /// default buffer and backoff. Nothing is connected yet: the first line opens the connection.
    pub fn spawn(address: &str) -> Result<Self, CarbonError> {
        Self::spawn_with(address, SinkOptions::default())
    }

    pub fn spawn_with(address: &str, options: SinkOptions) -> Result<Self, CarbonError> {
        Self::spawn_connecting(address, options, |address| async move { connect(&address).await })
    }

    /// As [`spawn_with`](Self::spawn_with), opening connections with `connector` (given the
    /// address; the tests' fake refuses).
    fn spawn_connecting<C, F>(address: &str, options: SinkOptions, connector: C) -> Result<Self, CarbonError>
    where
        C: Fn(String) -> F + Send + 'static,
        F: Future<Output = Result<TcpStream, String>> + Send + 'static,
    {
        parse_address(address)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| CarbonError::NoRuntime)?;
        let shared = Arc::new(Shared {
            address: address.to_owned(),
            options: SinkOptions { capacity: options.capacity.max(1), ..options },
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closing: Notify::new(),
            closed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        runtime.spawn(write_loop(shared.clone(), connector));
        Ok(Self { _close: Arc::new(CloseOnDrop(shared.clone())), shared })
    }

    /// Queues one line (a newline is added if it has none). Never blocks or waits: when the
    /// buffer is full the oldest line is dropped and counted.
    pub fn send(&self, mut line: String) {
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.shared.push(std::iter::once(line));
        self.shared.wake.notify_one();
    }

    /// Queues several lines at once (one lock, one wake-up), as [`send`](Self::send).
    pub fn send_all(&self, lines: impl IntoIterator<Item = String>) {
        self.shared.push(lines.into_iter().map(|mut l| {
            if !l.ends_with('\n') {
                l.push('\n');
            }
            l
        }));
        self.shared.wake.notify_one();
    }

    /// The address it sends to.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            queued: self.shared.queue.lock().map(|q| q.len()).unwrap_or(0),
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            connections: self.shared.connections.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        // A panic while holding the lock leaves a queue that is still a queue.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `lines`, dropping the oldest beyond capacity.
    fn push(&self, lines: impl Iterator<Item = String>) {
        let mut dropped = 0;
        {
            let mut queue = self.lock();
            for line in lines {
                if queue.len() >= self.options.capacity {
                    queue.pop_front();
                    dropped += 1;
                }
                queue.push_back(line);
            }
        }
        self.count_dropped(dropped);
    }

    /// Puts an unsent batch back in front (it is older than what is queued), dropping its
    /// oldest lines if the buffer filled meanwhile.
    fn put_back(&self, batch: Vec<String>) {
        let mut dropped = 0;
        {
            let mut queue = self.lock();
            let room = self.options.capacity.saturating_sub(queue.len());
            let skip = batch.len().saturating_sub(room);
            dropped += skip;
            for line in batch.into_iter().skip(skip).rev() {
                queue.push_front(line);
            }
        }
        self.count_dropped(dropped);
    }

    fn take(&self, max: usize) -> Vec<String> {
        let mut queue = self.lock();
        let n = queue.len().min(max);
        queue.drain(..n).collect()
    }

    fn count_dropped(&self, n: usize) {
        if n > 0 {
            let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            if before == 0 {
                warn!(carbon = %self.address, capacity = self.options.capacity, "Carbon buffer full: dropping the oldest lines (counted)");
            }
        }
    }
}

/// The writer: waits for lines, keeps one connection (opened by `connector`), puts a failed batch
/// back and reconnects with backoff ([`SinkOptions`]: a failed connection waits 250 ms, doubling
/// up to 5 s; new lines do not cut the wait short). Ends when the sink is closed and what is left
/// was sent or could not be.
async fn write_loop<C, F>(shared: Arc<Shared>, connector: C)
where
    C: Fn(String) -> F,
    F: Future<Output = Result<TcpStream, String>>,
{
    let address = shared.address.clone();
    let mut conn: Option<TcpStream> = None;
    let reconnect = Backoff::new(shared.options.min_backoff, shared.options.max_backoff);
    // Failed connections in a row.
    let mut failures: u32 = 0;
    // Since when Carbon has been unreachable, and the dropped count then (for the log).
    let mut outage: Option<(std::time::Instant, u64)> = None;
    loop {
        let woken = shared.wake.notified();
        let closed = shared.closed.load(Ordering::Acquire);
        let batch = shared.take(MAX_BATCH);
        if batch.is_empty() {
            if closed {
                break;
            }
            woken.await;
            continue;
        }
        if conn.as_ref().is_some_and(peer_closed) {
            debug!(carbon = %address, "Carbon closed the connection; reconnecting");
            conn = None;
        }
        let stream = match conn.as_mut() {
            Some(stream) => stream,
            None => match connector(address.clone()).await {
                Ok(stream) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    failures = 0;
                    match outage.take() {
                        Some((since, dropped)) => info!(
                            carbon = %address,
                            after_s = since.elapsed().as_secs(),
                            dropped = shared.dropped.load(Ordering::Relaxed) - dropped,
                            "connected to Carbon again; sending resumes"
                        ),
                        None => info!(carbon = %address, "connected to Carbon"),
                    }
                    conn.insert(stream)
                }
                Err(reason) => {
                    shared.put_back(batch);
                    if outage.is_none() {
                        warn!(carbon = %address, %reason, buffering = shared.options.capacity, "cannot reach Carbon; buffering and retrying");
                        outage = Some((std::time::Instant::now(), shared.dropped.load(Ordering::Relaxed)));
                    } else {
                        debug!(carbon = %address, %reason, "cannot reach Carbon");
                    }
                    if closed {
                        break;
                    }
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(reconnect.delay(failures)) => {}
                        () = shared.closing.notified() => {}
                    }
                    continue;
                }
            },
        };
        let bytes = batch.concat();
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes.as_bytes())).await {
            Ok(Ok(())) => {
                shared.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("a write took over {}s", WRITE_TIMEOUT.as_secs()),
                };
                warn!(carbon = %address, %reason, "lost the Carbon connection; reconnecting");
                shared.put_back(batch);
                conn = None;
                outage.get_or_insert((std::time::Instant::now(), shared.dropped.load(Ordering::Relaxed)));
                if closed {
                    break;
                }
            }
        }
    }
    let left = shared.lock().len();
    if left > 0 {
        debug!(carbon = %address, left, "Carbon sink closed with unsent lines");
    }
}

/// Whether Carbon closed (or reset) the connection. Carbon never sends anything, so a readable
/// connection is one that ended; anything read is discarded.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A connection to the first candidate address that answers.
async fn connect(address: &str) -> Result<TcpStream, String> {
    let mut reasons = Vec::new();
    for candidate in candidates(address) {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&candidate)).await {
            Ok(Ok(stream)) => {
                // Lines are small and each batch is one write: send them at once.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => reasons.push(format!("{candidate}: {e}")),
            Err(_) => reasons.push(format!("{candidate}: no answer in {}s", CONNECT_TIMEOUT.as_secs())),
        }
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    fn settings_from(vars: &[(&str, &str)]) -> Result<CarbonSettings, CarbonError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CarbonSettings::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn settings_default_to_interlock_0_3s() {
        let s = settings_from(&[(ENV_ADDRESS, "graphite:2003")]).unwrap();
        assert_eq!(
            s,
            CarbonSettings {
                address: "graphite:2003".into(),
                prefix: "docker.stats".into(),
                image_name_filter: None,
                interval: Duration::from_secs(10)
            }
        );
        assert!(s.image_filter().unwrap().is_match("anything:latest"), "no filter: every image");
        let s = settings_from(&[
            (ENV_ADDRESS, "10.0.0.5:2004"),
            (ENV_PREFIX, "lab.stats"),
            (ENV_IMAGE_NAME_FILTER, "^local/interlock-app"),
            (ENV_INTERVAL, "2"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!((s.prefix.as_str(), s.interval), ("lab.stats", Duration::from_secs(2)));
        let filter = s.image_filter().unwrap();
        assert!(filter.is_match("local/interlock-app:lab"));
        assert!(!filter.is_match("local/interlock-proxy:lab"));
        // Empty counts as unset.
        assert_eq!(settings_from(&[(ENV_ADDRESS, "g:2003"), (ENV_PREFIX, "")]).unwrap().prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn bad_settings_say_which_variable() {
        assert_eq!(settings_from(&[]), Err(CarbonError::MissingAddress));
        for address in ["graphite", "graphite:", "graphite:0", "graphite:99999", ":2003", "a b:2003"] {
            let e = settings_from(&[(ENV_ADDRESS, address)]).unwrap_err();
            assert!(matches!(e, CarbonError::Address { .. }), "{address}: {e:?}");
        }
        assert!(settings_from(&[(ENV_ADDRESS, "[::1]:2003")]).is_ok());
        for interval in ["0", "-1", "1.5", "10s"] {
            let e = settings_from(&[(ENV_ADDRESS, "g:2003"), (ENV_INTERVAL, interval)]).unwrap_err();
            assert_eq!(e, CarbonError::Interval { value: interval.into() });
            assert!(e.to_string().contains(ENV_INTERVAL));
        }
        let e = settings_from(&[(ENV_ADDRESS, "g:2003"), (ENV_IMAGE_NAME_FILTER, "app(")]).unwrap_err();
        assert!(matches!(e, CarbonError::Filter { .. }) && e.to_string().contains(ENV_IMAGE_NAME_FILTER), "{e}");
        for prefix in ["a..b", ".a", "a b", "a/b", "stats."] {
            let e = settings_from(&[(ENV_ADDRESS, "g:2003"), (ENV_PREFIX, prefix)]).unwrap_err();
            assert_eq!(e, CarbonError::Prefix { prefix: prefix.into() });
        }
    }

    #[test]
    fn names_become_one_safe_component() {
        assert_eq!(sanitize("web.1.x2kq9"), "web_1_x2kq9");
        assert_eq!(sanitize("lb-00"), "lb-00");
        assert_eq!(sanitize("my app/é\n*"), "my_app____");
        assert_eq!(sanitize("under_score"), "under_score");
        assert_eq!(sanitize(""), "_");
        assert_eq!(line("a.b", 1.5, 7), "a.b 1.5 7\n");
    }

    #[test]
    fn bare_service_names_are_tried_as_tasks_first() {
        assert_eq!(candidates("carbon:2003"), ["tasks.carbon:2003", "carbon:2003"]);
        assert_eq!(candidates("graphite.example.com:2003"), ["graphite.example.com:2003"]);
        assert_eq!(candidates("10.0.0.5:2003"), ["10.0.0.5:2003"]);
        assert_eq!(candidates("localhost:2003"), ["localhost:2003"]);
        assert_eq!(candidates("[::1]:2003"), ["[::1]:2003"]);
    }

    fn fast() -> SinkOptions {
        SinkOptions { capacity: 10, min_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(50) }
    }

    /// Reads `n` lines from the next connection `listener` accepts; returns them and the
    /// connection's reader (to keep it open).
    pub(crate) async fn accept_lines(listener: &TcpListener, n: usize) -> (Vec<String>, BufReader<TcpStream>) {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        let mut reader = BufReader::new(stream);
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut l = String::new();
            tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut l)).await.unwrap().unwrap();
            lines.push(l);
        }
        (lines, reader)
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_lines_and_the_rest_go_when_carbon_is_back() {
        // A free port with nobody listening yet.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let sink = CarbonSink::spawn_with(&format!("127.0.0.1:{port}"), fast()).unwrap();
        let started = std::time::Instant::now();
        for i in 0..25 {
            sink.send(format!("m {i} 1"));
        }
        assert!(started.elapsed() < Duration::from_millis(50), "send never waits");
        // Let the writer fail a few connections.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let stats = sink.stats();
        assert_eq!((stats.queued, stats.dropped, stats.sent, stats.connections), (10, 15, 0, 0), "{stats:?}");
        // Carbon comes up: the newest 10 arrive, in order.
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (lines, _conn) = accept_lines(&listener, 10).await;
        let want: Vec<String> = (15..25).map(|i| format!("m {i} 1\n")).collect();
        assert_eq!(lines, want);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = sink.stats();
        assert_eq!((stats.queued, stats.dropped, stats.sent, stats.connections), (0, 15, 10, 1), "{stats:?}");
    }

    #[tokio::test]
    async fn a_connection_carbon_closed_is_replaced_and_sending_resumes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = CarbonSink::spawn_with(&listener.local_addr().unwrap().to_string(), fast()).unwrap();
        sink.send("a 1 1".into());
        let (lines, conn) = accept_lines(&listener, 1).await;
        assert_eq!(lines, ["a 1 1\n"]);
        // Carbon goes away (its end closes), then comes back on the same port.
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
        sink.send("b 2 2".into());
        sink.send("c 3 3".into());
        let (lines, _conn) = accept_lines(&listener, 2).await;
        assert_eq!(lines, ["b 2 2\n", "c 3 3\n"]);
        assert_eq!(sink.stats().connections, 2);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_flushes_and_stops_the_writer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = CarbonSink::spawn_with(&listener.local_addr().unwrap().to_string(), fast()).unwrap();
        let clone = sink.clone();
        drop(sink);
        clone.send("last 1 1".into());
        drop(clone);
        let (lines, mut conn) = accept_lines(&listener, 1).await;
        assert_eq!(lines, ["last 1 1\n"]);
        // The writer ended: its end of the connection closes.
        let mut rest = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read_line(&mut rest)).await.unwrap().unwrap();
        assert_eq!(n, 0, "connection closed after the flush");
    }

    /// Carbon refusing every connection, in paused time: the writer dials at 0, 0.25, 0.75,
    /// 1.75, 3.75 and 7.75 s (waits of 250 ms doubling), then every 5 s (12.75 .. 27.75 s): 10
    /// dials in 30 s, however many lines keep coming.
    #[tokio::test(start_paused = true)]
    async fn a_carbon_that_refuses_every_connection_is_dialled_with_backoff() {
        let dials = Arc::new(AtomicU64::new(0));
        let counter = dials.clone();
        let sink = CarbonSink::spawn_connecting("carbon:2003", SinkOptions::default(), move |address| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Err(format!("{address}: connection refused")) }
        })
        .unwrap();
        // A line every 100 ms for 30 s: each wakes the writer, none shortens its wait.
        for i in 0..300 {
            sink.send(format!("m {i} 1"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(dials.load(Ordering::SeqCst), 10);
        let stats = sink.stats();
        assert_eq!((stats.connections, stats.sent, stats.queued), (0, 0, 300), "{stats:?}");
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error() {
        assert_eq!(CarbonSink::spawn("g:2003").unwrap_err(), CarbonError::NoRuntime);
    }
}
