//! A load generator for the lab's proxies: workers sending `GET` with a `Host` header to one
//! `addr:port` until stopped, every failure classified.
//!
//! HTTP/1.1 is written by hand over a `TcpStream` (status line, headers, `Content-Length` and
//! chunked bodies) so that nothing is hidden by a client library's retries: a refused or slow
//! connect, a reset or an EOF before the response, a response cut short, a 5xx or any other
//! status than the expected one are each counted apart. With keep-alive, a request on a REUSED
//! connection that fails before any response byte is what every HTTP client meets when the server
//! closes an idle connection (nginx does on a graceful reload) and retries: so does this, once, on
//! a new connection, and counts it as `keepalive_closed`, not as failed, unless the retry fails.
//!
//! A [`Load`] runs on its own thread and runtime, so whatever the test does meanwhile (blocking
//! docker CLI calls included) cannot stall it.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most one request may take, connect included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`time_to_served`] probes.
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// Failure descriptions kept per report (the earliest).
const SAMPLES: usize = 12;
/// The most response-head bytes read before the response counts as malformed.
const MAX_HEAD: usize = 64 * 1024;

/// How a worker uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new TCP connection per request (`Connection: close`).
    NewConnection,
    /// HTTP/1.1 keep-alive: each worker reuses one connection while the server keeps it open.
    KeepAlive,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::NewConnection => "new-connection",
            Mode::KeepAlive => "keep-alive",
        })
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureClass {
    /// The connect was refused (nothing listening: a proxy task stopped).
    ConnectRefused,
    /// The connect did not complete within the request's time.
    ConnectTimeout,
    /// Any other connect error (no route to host, ...).
    ConnectError,
    /// The connection was reset before any response byte.
    ResetBeforeResponse,
    /// The connection was closed before any response byte.
    EofBeforeResponse,
    /// The response started, then the connection failed or closed.
    Truncated,
    /// No complete response within the request's time.
    Timeout,
    /// A 5xx status.
    ErrorStatus,
    /// A status other than the expected one, not 5xx.
    UnexpectedStatus,
    /// The expected status, but the body lacks the expected text (another app answered).
    WrongBody,
    /// Not HTTP/1.x.
    Malformed,
}

impl FailureClass {
    pub const ALL: [FailureClass; 11] = [
        FailureClass::ConnectRefused,
        FailureClass::ConnectTimeout,
        FailureClass::ConnectError,
        FailureClass::ResetBeforeResponse,
        FailureClass::EofBeforeResponse,
        FailureClass::Truncated,
        FailureClass::Timeout,
        FailureClass::ErrorStatus,
        FailureClass::UnexpectedStatus,
        FailureClass::WrongBody,
        FailureClass::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::ConnectRefused => "connect_refused",
            FailureClass::ConnectTimeout => "connect_timeout",
            FailureClass::ConnectError => "connect_error",
            FailureClass::ResetBeforeResponse => "reset_before_response",
            FailureClass::EofBeforeResponse => "eof_before_response",
            FailureClass::Truncated => "truncated",
            FailureClass::Timeout => "timeout",
            FailureClass::ErrorStatus => "error_status",
            FailureClass::UnexpectedStatus => "unexpected_status",
            FailureClass::WrongBody => "wrong_body",
            FailureClass::Malformed => "malformed",
        }
    }

    /// Failed before any byte of a response arrived: on a reused keep-alive connection, the
    /// server closed it while idle (a timeout is not: the server holds the connection).
    fn before_response(self) -> bool {
        matches!(self, FailureClass::ResetBeforeResponse | FailureClass::EofBeforeResponse)
    }
}

/// One failed exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub detail: String,
}

impl Failure {
    fn new(class: FailureClass, detail: impl Into<String>) -> Self {
        Failure { class, detail: detail.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.name(), self.detail)
    }
}

/// A complete HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server closes the connection after it (`Connection: close`, HTTP/1.0, body to EOF).
    pub close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a load sends and expects.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: String,
    pub port: u16,
    /// Sent in turn by each worker (`Host:` header).
    pub hosts: Vec<String>,
    pub path: String,
    pub workers: usize,
    pub mode: Mode,
    /// Any other status is a failure.
    pub expect_status: u16,
    /// With the expected status, the body must contain this (empty: anything).
    pub expect_body: String,
    /// Each worker's pause between requests.
    pub pause: Duration,
}

impl LoadSpec {
    /// `workers` workers sending `GET /` for `hosts` in `mode`, expecting 200, 20 ms apart.
    pub fn new(addr: &str, port: u16, hosts: &[&str], mode: Mode, workers: usize) -> Self {
        LoadSpec {
            addr: addr.to_owned(),
            port,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            path: "/".to_owned(),
            workers,
            mode,
            expect_status: 200,
            expect_body: String::new(),
            pause: Duration::from_millis(20),
        }
    }

    pub fn expect_body(mut self, text: &str) -> Self {
        self.expect_body = text.to_owned();
        self
    }
}

/// A failure (or, in `keepalive_samples`, a retried idle close) with when and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Since the load's epoch.
    pub at: Duration,
    pub worker: usize,
    pub host: String,
    pub what: String,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.3}s worker {} {}: {}", self.at.as_secs_f64(), self.worker, self.host, self.what)
    }
}

/// Counts of a load (or of a part of one: see [`LoadReport::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: BTreeMap<FailureClass, u64>,
    /// Keep-alive requests whose reused connection had been closed by the server, retried once on
    /// a new connection with success: not failures.
    pub keepalive_closed: u64,
    /// The earliest failures.
    pub failures: Vec<Sample>,
    /// The earliest failure of each class.
    pub first_by_class: BTreeMap<FailureClass, Sample>,
    /// The earliest retried idle closes.
    pub keepalive_samples: Vec<Sample>,
    /// The latest failures (what a window taken with [`LoadReport::since`] keeps as `failures`).
    pub latest: Vec<Sample>,
    /// The slowest successful request (a retry included).
    pub max_latency: Duration,
    /// Successful requests that took over a second.
    pub slow: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    pub fn count(&self, class: FailureClass) -> u64 {
        self.failed.get(&class).copied().unwrap_or(0)
    }

    fn fail(&mut self, at: Duration, worker: usize, host: &str, failure: &Failure) {
        *self.failed.entry(failure.class).or_default() += 1;
        let sample = Sample { at, worker, host: host.to_owned(), what: failure.to_string() };
        self.first_by_class.entry(failure.class).or_insert_with(|| sample.clone());
        if self.failures.len() < SAMPLES {
            self.failures.push(sample.clone());
        }
        if self.latest.len() == SAMPLES {
            self.latest.remove(0);
        }
        self.latest.push(sample);
    }

    fn merge(&mut self, other: &LoadReport) {
        self.ok += other.ok;
        for (class, n) in &other.failed {
            *self.failed.entry(*class).or_default() += n;
        }
        self.keepalive_closed += other.keepalive_closed;
        self.max_latency = self.max_latency.max(other.max_latency);
        self.slow += other.slow;
        for (class, sample) in &other.first_by_class {
            let first = self.first_by_class.entry(*class).or_insert_with(|| sample.clone());
            if sample.at < first.at {
                *first = sample.clone();
            }
        }
        // The earliest overall are among each worker's earliest.
        self.failures.extend(other.failures.iter().cloned());
        self.failures.sort_by_key(|s| s.at);
        self.failures.truncate(SAMPLES);
        self.keepalive_samples.extend(other.keepalive_samples.iter().cloned());
        self.keepalive_samples.sort_by_key(|s| s.at);
        self.keepalive_samples.truncate(SAMPLES);
        self.latest.extend(other.latest.iter().cloned());
        self.latest.sort_by_key(|s| s.at);
        let extra = self.latest.len().saturating_sub(SAMPLES);
        self.latest.drain(..extra);
    }

    /// The counts added since `earlier` (a snapshot of the same load); its `failures` are the
    /// latest failures that fall inside the window (so a window's assertion can say what failed).
    pub fn since(&self, earlier: &LoadReport) -> LoadReport {
        let failed = self
            .failed
            .iter()
            .map(|(class, n)| (*class, n - earlier.failed.get(class).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        LoadReport {
            ok: self.ok - earlier.ok,
            failed,
            keepalive_closed: self.keepalive_closed - earlier.keepalive_closed,
            slow: self.slow - earlier.slow,
            elapsed: self.elapsed.saturating_sub(earlier.elapsed),
            failures: self.latest.iter().filter(|s| s.at >= earlier.elapsed).cloned().collect(),
            ..LoadReport::default()
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {}, failed {}", self.ok, self.failed_total())?;
        if !self.failed.is_empty() {
            let classes: Vec<String> = self.failed.iter().map(|(c, n)| format!("{} {n}", c.name())).collect();
            write!(f, " ({})", classes.join(", "))?;
        }
        write!(
            f,
            ", keepalive_closed {}, slowest {} ms, over 1 s {}, in {:.1} s",
            self.keepalive_closed,
            self.max_latency.as_millis(),
            self.slow,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A running load. Dropping it stops the workers without waiting.
pub struct Load {
    spec: LoadSpec,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    reports: Vec<Arc<Mutex<LoadReport>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `spec.workers` workers on a thread of their own; times are since now.
    pub fn start(spec: LoadSpec) -> Load {
        Load::start_at(spec, Instant::now())
    }

    /// Starts the workers, with sample times counted from `epoch` (to line up several loads).
    pub fn start_at(spec: LoadSpec, epoch: Instant) -> Load {
        assert!(spec.workers > 0 && !spec.hosts.is_empty(), "a load needs workers and hosts");
        let stop = Arc::new(AtomicBool::new(false));
        let reports: Vec<_> = (0..spec.workers).map(|_| Arc::new(Mutex::new(LoadReport::default()))).collect();
        let thread = {
            let (spec, stop, reports) = (spec.clone(), Arc::clone(&stop), reports.clone());
            std::thread::Builder::new()
                .name(format!("load-{}", spec.mode))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("a runtime for the load");
                    runtime.block_on(async move {
                        let workers: Vec<_> = reports
                            .into_iter()
                            .enumerate()
                            .map(|(i, report)| tokio::spawn(worker(i, spec.clone(), epoch, Arc::clone(&stop), report)))
                            .collect();
                        for w in workers {
                            let _ = w.await;
                        }
                    });
                })
                .expect("start the load's thread")
        };
        Load { spec, epoch, stop, reports, thread: Some(thread) }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn spec(&self) -> &LoadSpec {
        &self.spec
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LoadReport {
        let mut total = LoadReport::default();
        for r in &self.reports {
            total.merge(&r.lock().unwrap());
        }
        total.elapsed = self.epoch.elapsed();
        total
    }

    /// Stops the workers (each finishes its request in flight) and returns the counts.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join()).await.expect("join").expect("the load's thread");
        }
        self.snapshot()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn worker(id: usize, spec: LoadSpec, epoch: Instant, stop: Arc<AtomicBool>, report: Arc<Mutex<LoadReport>>) {
    let mut conn: Option<Conn> = None;
    let mut turn = id; // workers start on different hosts
    while !stop.load(Ordering::SeqCst) {
        let host = &spec.hosts[turn % spec.hosts.len()];
        turn += 1;
        let started = Instant::now();
        let at = started.duration_since(epoch);
        let outcome = match spec.mode {
            Mode::NewConnection => fetch(&spec.addr, spec.port, host, &spec.path, REQUEST_TIMEOUT).await,
            Mode::KeepAlive => {
                let reused = conn.is_some();
                match keepalive_exchange(&mut conn, &spec, host).await {
                    Err(first) if reused && first.class.before_response() => {
                        // The server closed the idle connection under the request: retry once.
                        conn = None;
                        match keepalive_exchange(&mut conn, &spec, host).await {
                            Ok(response) => {
                                let mut r = report.lock().unwrap();
                                r.keepalive_closed += 1;
                                if r.keepalive_samples.len() < SAMPLES {
                                    let what = format!("reused connection: {first}; retried on a new one");
                                    r.keepalive_samples.push(Sample { at, worker: id, host: host.clone(), what });
                                }
                                Ok(response)
                            }
                            Err(retry) => Err(Failure::new(
                                retry.class,
                                format!("{} (retry after the reused connection failed: {first})", retry.detail),
                            )),
                        }
                    }
                    other => other,
                }
            }
        };
        let took = started.elapsed();
        {
            let mut r = report.lock().unwrap();
            match outcome.and_then(|response| judge(&spec, response)) {
                Ok(()) => {
                    r.ok += 1;
                    r.max_latency = r.max_latency.max(took);
                    if took > Duration::from_secs(1) {
                        r.slow += 1;
                    }
                }
                Err(failure) => r.fail(at, id, host, &failure),
            }
        }
        tokio::time::sleep(spec.pause).await;
    }
}

/// The expected status and body, or the failure.
fn judge(spec: &LoadSpec, response: Response) -> Result<(), Failure> {
    if response.status != spec.expect_status {
        let class = if response.status >= 500 { FailureClass::ErrorStatus } else { FailureClass::UnexpectedStatus };
        let body: String = response.text().chars().take(80).collect();
        return Err(Failure::new(class, format!("status {} ({body:?})", response.status)));
    }
    if !spec.expect_body.is_empty() && !response.text().contains(&spec.expect_body) {
        let body: String = response.text().chars().take(80).collect();
        return Err(Failure::new(FailureClass::WrongBody, format!("body {body:?} lacks {:?}", spec.expect_body)));
    }
    Ok(())
}

/// One request on the worker's connection (opened first if there is none), within
/// [`REQUEST_TIMEOUT`]; the connection is dropped after a failure or when the server closes it.
async fn keepalive_exchange(conn: &mut Option<Conn>, spec: &LoadSpec, host: &str) -> Result<Response, Failure> {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(Conn::connect(&spec.addr, spec.port).await?);
        }
        let c = conn.as_mut().expect("connected");
        c.exchange(host, &spec.path, true).await
    };
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(FailureClass::Timeout, format!("no response within {REQUEST_TIMEOUT:?}"))),
    };
    match &outcome {
        Ok(response) if !response.close => {}
        _ => *conn = None,
    }
    outcome
}

/// `GET path` with `Host: host` on a new connection (`Connection: close`), within `limit`.
pub async fn fetch(addr: &str, port: u16, host: &str, path: &str, limit: Duration) -> Result<Response, Failure> {
    let deadline = tokio::time::Instant::now() + limit;
    let attempt = async {
        let mut conn = Conn::connect(addr, port).await?;
        let response = conn.exchange(host, path, false).await?;
        // Let the server close first (its side keeps the TIME_WAIT): read to its EOF, briefly.
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.drain()).await;
        Ok(response)
    };
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(FailureClass::Timeout, format!("no response within {limit:?}"))),
    }
}

/// Probes `host` on `addr:port` with new connections every [`POLL_EVERY`] until a 200 whose body
/// contains `expect_body_contains`; the time from the call to that answer, or `None` after
/// `limit`.
pub async fn time_to_served(
    addr: &str,
    port: u16,
    host: &str,
    expect_body_contains: &str,
    limit: Duration,
) -> Option<Duration> {
    let from = Instant::now();
    poll_until(addr, port, host, "/", from, limit, |_, outcome| {
        outcome.ok().filter(|r| r.status == 200 && r.text().contains(expect_body_contains)).map(|_| from.elapsed())
    })
    .await
}

/// Probes `GET path` for `host` with new connections every [`POLL_EVERY`] until `check` (given the
/// time since `from` and the outcome) returns a value; `None` once `limit` has passed since
/// `from`.
pub async fn poll_until<T>(
    addr: &str,
    port: u16,
    host: &str,
    path: &str,
    from: Instant,
    limit: Duration,
    mut check: impl FnMut(Duration, Result<&Response, &Failure>) -> Option<T>,
) -> Option<T> {
    loop {
        let left = limit.checked_sub(from.elapsed())?;
        let probe = fetch(addr, port, host, path, left.min(Duration::from_secs(2))).await;
        if let Some(value) = check(from.elapsed(), probe.as_ref()) {
            return Some(value);
        }
        if from.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// A client connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of the current response received so far.
    received: usize,
}

fn connect_failure(e: &io::Error) -> Failure {
    let class = match e.kind() {
        io::ErrorKind::ConnectionRefused => FailureClass::ConnectRefused,
        io::ErrorKind::TimedOut => FailureClass::ConnectTimeout,
        _ => FailureClass::ConnectError,
    };
    Failure::new(class, format!("connect: {e}"))
}

impl Conn {
    async fn connect(addr: &str, port: u16) -> Result<Conn, Failure> {
        let connect = TcpStream::connect((addr, port));
        let stream = match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(connect_failure(&e)),
            Err(_) => {
                return Err(Failure::new(
                    FailureClass::ConnectTimeout,
                    format!("connect: none within {REQUEST_TIMEOUT:?}"),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: Vec::new(), received: 0 })
    }

    /// An I/O failure, classified by whether any of the response had arrived.
    fn io_failure(&self, what: &str, e: &io::Error) -> Failure {
        if self.received > 0 {
            return Failure::new(
                FailureClass::Truncated,
                format!("{what} after {} response bytes: {e}", self.received),
            );
        }
        let class = match e.kind() {
            io::ErrorKind::UnexpectedEof => FailureClass::EofBeforeResponse,
            _ => FailureClass::ResetBeforeResponse,
        };
        Failure::new(class, format!("{what}: {e}"))
    }

    fn eof(&self) -> Failure {
        if self.received > 0 {
            Failure::new(FailureClass::Truncated, format!("closed after {} response bytes", self.received))
        } else {
            Failure::new(FailureClass::EofBeforeResponse, "closed before any response byte")
        }
    }

    /// Reads more into the buffer; `Ok(false)` at EOF.
    async fn fill(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.received += n;
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) => Err(self.io_failure("read", &e)),
        }
    }

    /// One line (without CRLF).
    async fn line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::new(FailureClass::Malformed, "a line over 64 KiB"));
            }
            if !self.fill().await? {
                return Err(self.eof());
            }
        }
    }

    /// Exactly `n` bytes.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, Failure> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(self.eof());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Everything until the server closes.
    async fn read_to_close(&mut self) -> Result<Vec<u8>, Failure> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    async fn drain(&mut self) {
        let _ = self.read_to_close().await;
    }

    /// Sends one request and reads its response.
    async fn exchange(&mut self, host: &str, path: &str, keep_alive: bool) -> Result<Response, Failure> {
        if !self.buf.is_empty() {
            return Err(Failure::new(
                FailureClass::Malformed,
                format!("{} unrequested bytes on the connection", self.buf.len()),
            ));
        }
        self.received = 0;
        let connection = if keep_alive { "" } else { "Connection: close\r\n" };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: interlock-lab-load\r\n{connection}\r\n");
        if let Err(e) = self.stream.write_all(request.as_bytes()).await {
            return Err(self.io_failure("write", &e));
        }
        loop {
            let response = self.response().await?;
            // Interim responses (100 Continue, ...) precede the real one.
            if !(100..200).contains(&response.status) || response.status == 101 {
                return Ok(response);
            }
        }
    }

    async fn response(&mut self) -> Result<Response, Failure> {
        let status_line = self.line().await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let (Some(status), true) = (status, version.starts_with("HTTP/1.")) else {
            return Err(Failure::new(FailureClass::Malformed, format!("status line {status_line:?}")));
        };
        let mut headers = Vec::new();
        let mut head_bytes = status_line.len();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            head_bytes += line.len();
            if head_bytes > MAX_HEAD {
                return Err(Failure::new(FailureClass::Malformed, "response head over 64 KiB"));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(Failure::new(FailureClass::Malformed, format!("header line {line:?}")));
            };
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_ascii_lowercase());
        let connection = header("connection").unwrap_or_default();
        let mut close = connection.contains("close") || (version == "HTTP/1.0" && !connection.contains("keep-alive"));
        let no_body = (100..200).contains(&status) || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            self.chunked().await?
        } else if let Some(length) = header("content-length") {
            let length = length
                .parse::<usize>()
                .map_err(|_| Failure::new(FailureClass::Malformed, format!("Content-Length {length:?}")))?;
            self.exact(length).await?
        } else {
            close = true;
            self.read_to_close().await?
        };
        Ok(Response { status, headers, body, close })
    }

    async fn chunked(&mut self) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| Failure::new(FailureClass::Malformed, format!("chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.exact(size).await?);
            if !self.line().await?.is_empty() {
                return Err(Failure::new(FailureClass::Malformed, "no CRLF after a chunk"));
            }
        }
    }
}
