//! A relay between interlock's core and a Docker engine's socket, for fault tests: it listens on
//! a unix socket (bind-mounted into the core's container as `/var/run/docker.sock`) and forwards
//! every connection to the engine's socket, unless told to make the API slow (a delay before
//! each request), failing (each request answered `503` by the relay, the connection closed) or
//! to hold the answer to the next write (the write reaches the engine, its answer never
//! reaches the core: a core killed mid-update). It counts requests as reads (`GET`, `HEAD`) and
//! writes (`POST`, `PUT`, `DELETE`, `PATCH`), by the request line at the start of what the core
//! sends, which is how the core's HTTP/1.1 client writes a request.
//!
//! Changing the mode drops every open connection (the event stream included), so what follows
//! meets the new mode at once. It runs on its own thread and runtime, as [`super::load::Load`]
//! does, so blocking calls in the test cannot stall it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// How the relay treats requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Each request waits this long before it is forwarded.
    Slow(Duration),
    /// Each request is answered `503 Service Unavailable` by the relay.
    Fail,
    /// The next write is forwarded, and its connection's answers are held from then on.
    HoldNextWrite,
}

#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    writes: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
    held: AtomicBool,
}

/// Requests seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    pub reads: u64,
    pub writes: u64,
    /// Requests answered 503 by the relay (counted in reads or writes too).
    pub refused: u64,
    pub connections: u64,
}

impl std::ops::Sub for RelayCounts {
    type Output = RelayCounts;
    fn sub(self, earlier: RelayCounts) -> RelayCounts {
        RelayCounts {
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            refused: self.refused - earlier.refused,
            connections: self.connections - earlier.connections,
        }
    }
}

struct Shared {
    mode: Mutex<Mode>,
    counts: Counts,
    /// Bumped on every mode change: open connections end when it moves.
    generation: watch::Sender<u64>,
}

pub struct Relay {
    shared: Arc<Shared>,
    path: PathBuf,
    _thread: std::thread::JoinHandle<()>,
}

impl Relay {
    /// Listens on `listen` (replacing a stale socket file) and forwards to `upstream`.
    pub fn start(listen: &Path, upstream: &Path) -> Relay {
        if let Some(dir) = listen.parent() {
            std::fs::create_dir_all(dir).expect("relay socket directory");
        }
        let _ = std::fs::remove_file(listen);
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared { mode: Mutex::new(Mode::Pass), counts: Counts::default(), generation });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (listen_path, upstream) = (listen.to_owned(), upstream.to_owned());
        let inner = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("relay runtime");
            runtime.block_on(async move {
                let listener = UnixListener::bind(&listen_path).expect("bind the relay socket");
                ready_tx.send(()).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    inner.counts.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(relay_connection(inner.clone(), client, upstream.clone()));
                }
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("relay listening");
        Relay { shared, path: listen.to_owned(), _thread: thread }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Switches the mode and drops every open connection.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        self.shared.counts.held.store(false, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Whether a write has been forwarded and its answer held (in [`Mode::HoldNextWrite`]).
    pub fn write_held(&self) -> bool {
        self.shared.counts.held.load(Ordering::SeqCst)
    }

    pub fn counts(&self) -> RelayCounts {
        let c = &self.shared.counts;
        RelayCounts {
            reads: c.reads.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }
}

/// `Some(true)` for a write's request line, `Some(false)` for a read's, `None` for anything else
/// (a body, the rest of a request).
fn request_kind(chunk: &[u8]) -> Option<bool> {
    const WRITES: [&[u8]; 4] = [b"POST /", b"PUT /", b"DELETE /", b"PATCH /"];
    const READS: [&[u8]; 2] = [b"GET /", b"HEAD /"];
    if WRITES.iter().any(|m| chunk.starts_with(m)) {
        Some(true)
    } else if READS.iter().any(|m| chunk.starts_with(m)) {
        Some(false)
    } else {
        None
    }
}

async fn relay_connection(shared: Arc<Shared>, mut client: UnixStream, upstream: PathBuf) {
    let mut generation = shared.generation.subscribe();
    generation.borrow_and_update();
    let Ok(engine) = UnixStream::connect(&upstream).await else { return };
    let (mut from_engine, mut to_engine) = engine.into_split();
    let hold = Arc::new(AtomicBool::new(false));
    let hold_answers = hold.clone();
    let (mut from_client, mut to_client) = client.split();
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let mode = *shared.mode.lock().unwrap();
            if let Some(write) = request_kind(chunk) {
                let counter = if write { &shared.counts.writes } else { &shared.counts.reads };
                counter.fetch_add(1, Ordering::Relaxed);
                match mode {
                    Mode::Fail => {
                        shared.counts.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Mode::Slow(delay) => tokio::time::sleep(delay).await,
                    Mode::HoldNextWrite if write && !shared.counts.held.swap(true, Ordering::SeqCst) => {
                        hold.store(true, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            if to_engine.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_engine.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if hold_answers.load(Ordering::SeqCst) {
                // Held until the connection is dropped (a mode change).
                std::future::pending::<()>().await;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let failed = tokio::select! {
        () = requests => *shared.mode.lock().unwrap() == Mode::Fail,
        () = answers => false,
        _ = generation.changed() => false,
    };
    if failed {
        let body = r#"{"message":"relay: injected failure"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(answer.as_bytes()).await;
    }
    let _ = client.shutdown().await;
}
