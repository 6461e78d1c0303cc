//! The core's side of `HitlessServiceUpdate`: the configs it serves to its extensions, and what
//! the extensions report back about each proxy task.
//!
//! The reconciler publishes a hitless cluster's config here once the proxy binary has accepted
//! it ([`Deliveries::publish`]); each extension long-polls `GET /v1/extensions/NAME/config`
//! (answered as soon as a config newer than the one it has exists) and reports every task it
//! wrote to with `POST /v1/extensions/NAME/reports`. Served on `ListenAddr` beside `/status`.
//!
//! Every request is signed with the extension's token (`reconcilers::token`, derived from a
//! manager-only key), which itself never crosses the network: `Authorization: Interlock-HMAC
//! ts=…,nonce=…,mac=…` over the extension, method, path and query, time, nonce and body. The
//! core accepts a request only when the MAC is that extension's, its time is within
//! `MAX_SKEW_SECS` of the core's clock, and its nonce is new (remembered per extension for
//! twice that window): so an extension reads only its own cluster's config, and a
//! captured request can be neither changed nor replayed. Every answer to an authenticated
//! request carries `x-interlock-mac` (`token::response_mac`, bound to the request's nonce), so
//! the extension applies nothing a third party wrote or replayed. An extension still sending
//! `Bearer` (older than the core) is told to update.
//!
//! Reports are bounded too: one is taken only for a running task of the extension's proxy
//! service that the last pass saw ([`Deliveries::set_tasks`]), on the node the report names,
//! so an extension cannot invent tasks (each is a `/status` row and a metrics series). A task's
//! rejection of a config holds the cluster once the task reported it twice (the extension
//! retries once first), so one failed write is not taken for the binary's verdict.
//!
//! Only the writer serves. A standby replica answers every request with 503 and
//! `x-interlock-writer: HOST` (the node whose replica writes), so the extension tries the next
//! replica's address; a task's report so reaches the replica that acts on it. Configs only go
//! forward: each carries a generation ([`Delivery::generation`]) that grows with every new
//! config and that the writer continues from what the swarm recorded and what the tasks run
//! ([`Deliveries::known`], fed to the core as `Observed::delivered`). A request saying its task
//! runs a generation as new as the served one, with another hash (an earlier writer's config),
//! wakes the loop ([`Deliveries::behind`]) so the writer renders a later generation at once.
//!
//! Nothing here is needed for serving traffic: proxies keep their last config when the core is
//! down, and a restarted core publishes again on its first pass.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use reconcilers::desired::Delivery;
use reconcilers::token::{self, Authorization, MAX_SKEW_SECS, RESPONSE_MAC_HEADER, SignedRequest};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::extension_api::{TaskReport, WRITER_HEADER};

/// How long a config request waits for a newer config before answering 204. Short enough that
/// an extension whose long poll sits on a writer that died (its address silent, not refusing)
/// gives up and finds the new writer within a few seconds of an election.
pub const LONG_POLL: Duration = Duration::from_secs(8);
/// Largest request body accepted (a report; a config request has none).
const MAX_REPORT: usize = 64 * 1024;
/// How long a request's body may take to arrive (the headers are bounded by the listener).
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Nonces remembered per extension: far above what its tasks send in the nonce window (a
/// config poll per node every `LONG_POLL` at most, and a report per write), so only a runaway
/// extension meets it, and it is refused rather than let a nonce be forgotten early.
const MAX_NONCES: usize = 100_000;
/// How many times a task must report rejecting a config before the cluster is held.
const REJECTIONS_TO_HOLD: u32 = 2;
/// Rejected hashes counted per task (the oldest are forgotten beyond).
const MAX_REJECTIONS_PER_TASK: usize = 16;

/// One extension's served config and its tasks' reports.
#[derive(Default)]
struct Cluster {
    config: Option<watch::Sender<Option<Arc<Delivery>>>>,
    tasks: BTreeMap<String, TaskReport>,
    /// The running tasks of the proxy service (task ID → node ID) as the last pass saw them;
    /// `None` until a pass has listed them. Only these may report.
    running: Option<BTreeMap<String, String>>,
    /// Per task, how many times it reported rejecting each config hash.
    rejections: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Cluster {
    fn record(&mut self, report: TaskReport) {
        let counts = self.rejections.entry(report.task.clone()).or_default();
        // The task runs that config: it took it, whatever it reported before.
        counts.remove(&report.hash);
        if let Some(rejected) = &report.rejected {
            if counts.len() >= MAX_REJECTIONS_PER_TASK && !counts.contains_key(rejected) {
                counts.pop_first();
            }
            *counts.entry(rejected.clone()).or_default() += 1;
        }
        if counts.is_empty() {
            self.rejections.remove(&report.task);
        }
        self.tasks.insert(report.task.clone(), report);
    }

    fn retain_tasks(&mut self, keep: impl Fn(&str) -> bool) {
        self.tasks.retain(|task, _| keep(task));
        self.rejections.retain(|task, _| keep(task));
    }
}

/// Whether this replica serves deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Serving {
    /// No pass has decided yet: answer as a standby that knows no writer.
    #[default]
    Undecided,
    /// This replica writes: it serves configs and takes reports.
    Writer,
    /// Another replica writes, on this node (hostname; empty while Raft elects).
    Standby(String),
}

/// How far past the newest served or known generation a reported one may be (each change is
/// one generation; an earlier writer may have served a few that were never recorded).
const MAX_GENERATION_LEAD: u64 = 1_000;

/// The nonces of the requests accepted, per extension, for `2 × MAX_SKEW_SECS` by the core's
/// clock: longer than a request's time passes the skew check, so a replayed request is always
/// caught (by its nonce, or its time).
#[derive(Default)]
struct Nonces {
    by_extension: HashMap<String, NonceWindow>,
}

#[derive(Default)]
struct NonceWindow {
    seen: HashSet<String>,
    /// (when accepted, nonce), oldest first.
    order: VecDeque<(u64, String)>,
}

/// Why a nonce was not admitted.
#[derive(Debug, PartialEq, Eq)]
enum NonceRefusal {
    Replayed,
    Full,
}

impl Nonces {
    fn admit(&mut self, extension: &str, nonce: &str, now: u64) -> Result<(), NonceRefusal> {
        let window = 2 * MAX_SKEW_SECS;
        self.by_extension.retain(|_, w| {
            while w.order.front().is_some_and(|(at, _)| now.saturating_sub(*at) > window) {
                let (_, old) = w.order.pop_front().expect("a front");
                w.seen.remove(&old);
            }
            !w.order.is_empty()
        });
        let entry = self.by_extension.entry(extension.to_owned()).or_default();
        if entry.seen.contains(nonce) {
            return Err(NonceRefusal::Replayed);
        }
        if entry.seen.len() >= MAX_NONCES {
            return Err(NonceRefusal::Full);
        }
        entry.seen.insert(nonce.to_owned());
        entry.order.push_back((now, nonce.to_owned()));
        Ok(())
    }
}

/// Configs served to extensions and their reports. Shared through `Context`.
#[derive(Default)]
pub struct Deliveries {
    key: Mutex<String>,
    clusters: Mutex<BTreeMap<String, Cluster>>,
    serving: Mutex<Serving>,
    /// By extension: the newest (generation, hash) served, requested or reported.
    known: Mutex<BTreeMap<String, (u64, String)>>,
    /// Woken when an extension's task runs a generation at least as new as the served one
    /// with another config: the loop passes at once.
    behind: tokio::sync::Notify,
    nonces: Mutex<Nonces>,
    /// Requests signed before this (Unix seconds) are refused ([`Deliveries::refuse_signed_before`]).
    not_before: std::sync::atomic::AtomicU64,
}

impl Deliveries {
    /// Refuses requests signed before `unix_seconds` (the core's start: `main` sets it), since
    /// the nonces of earlier requests were another process's to remember.
    pub fn refuse_signed_before(&self, unix_seconds: u64) {
        self.not_before.store(unix_seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// The key tokens derive from (the swarm's manager join token, read by `main`).
    pub fn set_key(&self, key: String) {
        *self.key.lock().expect("key lock") = key;
    }

    pub fn key(&self) -> String {
        self.key.lock().expect("key lock").clone()
    }

    /// Whether `token` is `extension`'s. No key: nobody is.
    pub fn authorized(&self, extension: &str, token: &str) -> bool {
        self.token(extension).is_some_and(|own| token::same_token(token, &own))
    }

    /// `extension`'s token; none without a key.
    fn token(&self, extension: &str) -> Option<String> {
        let key = self.key();
        (!key.is_empty()).then(|| token::extension_token(&key, extension))
    }

    /// Whether this replica serves (set by every pass).
    pub fn set_serving(&self, serving: Serving) {
        let mut current = self.serving.lock().expect("serving lock");
        if *current == serving {
            return;
        }
        if serving != Serving::Writer {
            // What a standby served once must not be served again when it next writes: it
            // publishes afresh from its first pass as the writer (and learns the tasks again).
            self.clusters.lock().expect("deliveries lock").clear();
        }
        *current = serving;
    }

    pub fn serving(&self) -> Serving {
        self.serving.lock().expect("serving lock").clone()
    }

    /// By extension, the newest config generation known to be served or run, and its hash.
    pub fn known(&self) -> BTreeMap<String, (u64, String)> {
        self.known.lock().expect("known lock").clone()
    }

    /// Records that `extension`'s tasks serve or run `generation` with `hash`, if newer than
    /// what is known. Returns whether it is at least as new as the served config and another
    /// config (the served one cannot go forward to it: a later generation is needed).
    fn learn(&self, extension: &str, generation: u64, hash: &str) -> bool {
        if generation == 0 || hash.is_empty() {
            return false;
        }
        // A token holder's word is not taken beyond what a writer could have served since: a
        // generation far past the newest served or known one is ignored (it could otherwise
        // push the count to its end and freeze deliveries).
        let served = self.current(extension).map_or(0, |d| d.generation);
        let mut known = self.known.lock().expect("known lock");
        let entry = known.entry(extension.to_owned()).or_insert((0, String::new()));
        if generation > entry.0.max(served).saturating_add(MAX_GENERATION_LEAD) {
            warn!(extension, generation, "ignoring a config generation far past any served");
            return false;
        }
        if generation > entry.0 {
            *entry = (generation, hash.to_owned());
        } else if generation == entry.0 && entry.1 != hash {
            // Two configs under one generation (two writers a moment apart, or a writer gone
            // before recording its own): neither is the cluster's, so the next one must come
            // after both. An empty hash says so to `desired::config_generation`.
            entry.1.clear();
        }
        drop(known);
        self.current(extension).is_some_and(|served| served.generation <= generation && served.hash != hash)
    }

    /// Wakes [`Deliveries::behind`] as a task found ahead would.
    #[cfg(test)]
    pub fn wake_behind(&self) {
        self.behind.notify_one();
    }

    /// Completes when an extension's task was found ahead of the served config (see
    /// [`Deliveries::learn`]): the loop passes at once.
    pub async fn behind(&self) {
        self.behind.notified().await;
    }

    fn sender(&self, extension: &str) -> watch::Sender<Option<Arc<Delivery>>> {
        let mut clusters = self.clusters.lock().expect("deliveries lock");
        clusters.entry(extension.to_owned()).or_default().config.get_or_insert_with(|| watch::channel(None).0).clone()
    }

    /// Serves `delivery` to its extension from now on; waiting requests are answered at once.
    /// Publishing the config already served does nothing.
    pub fn publish(&self, delivery: &Delivery) {
        let sender = self.sender(&delivery.extension);
        self.learn(&delivery.extension, delivery.generation, &delivery.hash);
        sender.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.hash == delivery.hash && c.generation == delivery.generation) {
                return false;
            }
            // Never backwards: a config older than the one served is not served.
            if current.as_ref().is_some_and(|c| c.generation > delivery.generation) {
                warn!(extension = %delivery.extension, served = current.as_ref().map_or(0, |c| c.generation), generation = delivery.generation, "not serving an older config generation");
                return false;
            }
            info!(extension = %delivery.extension, hash = %&delivery.hash[..12.min(delivery.hash.len())], "serving a new proxy config to the extension");
            *current = Some(Arc::new(delivery.clone()));
            true
        });
    }

    /// The config served to `extension`, if any.
    pub fn current(&self, extension: &str) -> Option<Arc<Delivery>> {
        self.sender(extension).borrow().clone()
    }

    /// The served config once it is newer than `after` (hash) at `generation`, waiting up to
    /// `wait`: of a later generation, or (an extension that knows no generations, or a task on
    /// the config it started with: `generation` 0) another hash.
    pub async fn newer_than(
        &self,
        extension: &str,
        after: &str,
        generation: u64,
        wait: Duration,
    ) -> Option<Arc<Delivery>> {
        if self.learn(extension, generation, after) {
            self.behind.notify_one();
        }
        let mut receiver = self.sender(extension).subscribe();
        let changed = async {
            loop {
                if let Some(current) = receiver.borrow_and_update().clone()
                    && current.hash != after
                    && (generation == 0 || current.generation > generation)
                {
                    return Some(current);
                }
                receiver.changed().await.ok()?;
            }
        };
        tokio::time::timeout(wait, changed).await.ok().flatten()
    }

    /// Records an extension's report if it is about a running task of its proxy service, on
    /// that task's node, as the last pass saw them; else why not (nothing is recorded).
    pub fn accept_report(&self, extension: &str, report: TaskReport) -> Result<(), String> {
        let (generation, hash) = (report.generation, report.hash.clone());
        {
            let mut clusters = self.clusters.lock().expect("deliveries lock");
            let Some(cluster) = clusters.get_mut(extension).filter(|c| c.running.is_some()) else {
                return Err(format!(
                    "no pass yet has listed the proxy tasks of {extension} on this replica: report again after the next pass"
                ));
            };
            match cluster.running.as_ref().and_then(|running| running.get(&report.task)) {
                None => {
                    return Err(format!("{} is not a running task of {extension}'s proxy service", report.task));
                }
                Some(node) if *node != report.node => {
                    return Err(format!("task {} runs on node {node}, not on {}", report.task, report.node));
                }
                Some(_) => {}
            }
            self.warn_rejection(extension, &report);
            cluster.record(report);
        }
        if self.learn(extension, generation, &hash) {
            self.behind.notify_one();
        }
        Ok(())
    }

    fn warn_rejection(&self, extension: &str, report: &TaskReport) {
        if let Some(error) = &report.error {
            warn!(extension, task = %report.task, node = %report.node, "a proxy task did not take the config: {error}");
        }
    }

    /// The running tasks of `extension`'s proxy service (task ID → node ID), set by every
    /// pass: only they may report from now on, and reports of tasks no longer listed go.
    pub fn set_tasks(&self, extension: &str, running: BTreeMap<String, String>) {
        let mut clusters = self.clusters.lock().expect("deliveries lock");
        let cluster = clusters.entry(extension.to_owned()).or_default();
        cluster.retain_tasks(|task| running.contains_key(task));
        cluster.running = Some(running);
    }

    /// The last report of each task of `extension`.
    pub fn tasks(&self, extension: &str) -> BTreeMap<String, TaskReport> {
        self.clusters.lock().expect("deliveries lock").get(extension).map(|c| c.tasks.clone()).unwrap_or_default()
    }

    /// Why a task's own binary rejected config `hash` of `extension`, once one task has
    /// reported rejecting it twice (a single failure may be the
    /// write's, which the extension retries once before it reports again).
    pub fn rejected(&self, extension: &str, hash: &str) -> Option<String> {
        let clusters = self.clusters.lock().expect("deliveries lock");
        let cluster = clusters.get(extension)?;
        let (task, _) =
            cluster.rejections.iter().find(|(_, counts)| counts.get(hash).is_some_and(|n| *n >= REJECTIONS_TO_HOLD))?;
        let last = cluster.tasks.get(task);
        let error = last.filter(|r| r.rejected.as_deref() == Some(hash)).and_then(|r| r.error.as_deref());
        Some(format!(
            "the proxy task {task} on {} rejected it: {}",
            last.map_or("?", |r| r.node.as_str()),
            error.unwrap_or("no reason")
        ))
    }

    /// The binary's words of every task whose latest report is a rejection it stands by
    /// (reported [`REJECTIONS_TO_HOLD`] times), whatever config it rejected.
    pub fn task_rejections(&self, extension: &str) -> Vec<String> {
        let clusters = self.clusters.lock().expect("deliveries lock");
        let Some(cluster) = clusters.get(extension) else { return vec![] };
        cluster
            .tasks
            .iter()
            .filter_map(|(task, report)| {
                let hash = report.rejected.as_deref()?;
                let counted = cluster.rejections.get(task)?.get(hash).is_some_and(|n| *n >= REJECTIONS_TO_HOLD);
                counted.then(|| report.error.clone()).flatten()
            })
            .collect()
    }

    /// `tasks` running proxy tasks that have not reported `hash` yet.
    pub fn pending(&self, extension: &str, hash: &str, tasks: &BTreeSet<String>) -> Vec<String> {
        let reports = self.tasks(extension);
        tasks.iter().filter(|t| reports.get(*t).is_none_or(|r| r.hash != hash)).cloned().collect()
    }

    /// Admits a signed request's nonce (see [`Nonces`]).
    fn admit_nonce(&self, extension: &str, nonce: &str, now: u64) -> Result<(), NonceRefusal> {
        self.nonces.lock().expect("nonces lock").admit(extension, nonce, now)
    }
}

/// Answers a request under `/v1/extensions/`.
pub async fn respond<B>(deliveries: &Deliveries, request: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    respond_at(deliveries, request, now).await
}

/// [`respond`] with the core's clock at `now` (Unix seconds).
async fn respond_at<B>(deliveries: &Deliveries, request: Request<B>, now: u64) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let Some((extension, what)) = path.strip_prefix("/v1/extensions/").and_then(|rest| rest.split_once('/')) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let header = parts.headers.get(hyper::header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()));
    let auth = match header.as_deref() {
        Some(value) if value.starts_with("Bearer") => {
            return text(
                StatusCode::UNAUTHORIZED,
                "this extension is older than the core: it sends its token (Bearer), and the core takes only signed requests (Interlock-HMAC); update the extension's image to the core's\n",
            );
        }
        Some(value) => match Authorization::parse(value) {
            Some(auth) => auth,
            None => {
                return text(StatusCode::UNAUTHORIZED, "not a signed request (Interlock-HMAC ts=…,nonce=…,mac=…)\n");
            }
        },
        None => return text(StatusCode::UNAUTHORIZED, "unsigned request: Authorization: Interlock-HMAC is needed\n"),
    };
    let Some(token) = deliveries.token(extension) else {
        return text(StatusCode::UNAUTHORIZED, "this core has no key to check extensions with\n");
    };
    // The body is signed: read it (bounded in size and time) before checking.
    let body = match tokio::time::timeout(BODY_TIMEOUT, http_body_util::Limited::new(body, MAX_REPORT).collect()).await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("a body is at most {MAX_REPORT} bytes\n"));
        }
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}\n")),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n"),
    };
    let signed = SignedRequest {
        extension,
        method: parts.method.as_str(),
        // As received: the extension signed what it sent.
        target: parts.uri.path_and_query().map_or(path, |pq| pq.as_str()),
        timestamp: auth.timestamp,
        nonce: &auth.nonce,
        body: &body,
    };
    if !token::same_token(&auth.mac, &token::request_mac(&token, &signed)) {
        return text(
            StatusCode::UNAUTHORIZED,
            "the signature is not this extension's (another extension's token, or a changed request)\n",
        );
    }
    let skew = now.abs_diff(auth.timestamp);
    if skew > MAX_SKEW_SECS {
        return text(
            StatusCode::UNAUTHORIZED,
            &format!(
                "the request's time is {skew} s from the core's clock (at most {MAX_SKEW_SECS} s): check the nodes' clocks\n"
            ),
        );
    }
    // The nonce cache is this process's: a request signed before it started could be a replay
    // of one an earlier core (a restart, another replica) already took.
    if auth.timestamp < deliveries.not_before.load(std::sync::atomic::Ordering::Relaxed) {
        return text(StatusCode::UNAUTHORIZED, "signed before this core started: sign it again\n");
    }
    match deliveries.admit_nonce(extension, &auth.nonce, now) {
        Ok(()) => {}
        Err(NonceRefusal::Replayed) => {
            return text(StatusCode::UNAUTHORIZED, "a replayed request: this nonce was already used\n");
        }
        Err(NonceRefusal::Full) => {
            warn!(
                extension,
                "more than {MAX_NONCES} requests in {} s: refusing until older ones age out",
                2 * MAX_SKEW_SECS
            );
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("more than {MAX_NONCES} requests in {} s from this extension\n", 2 * MAX_SKEW_SECS),
            );
        }
    }
    let answer = answer(deliveries, extension, what, &parts, &body).await;
    sign(answer, &token, extension, &auth.nonce).await
}

/// The answer to an authenticated request.
async fn answer(
    deliveries: &Deliveries,
    extension: &str,
    what: &str,
    request: &hyper::http::request::Parts,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let writer = match deliveries.serving() {
        Serving::Writer => None,
        Serving::Undecided => Some(String::new()),
        Serving::Standby(writer) => Some(writer),
    };
    if let Some(writer) = writer {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "a standby replica: the writer is on {}\n",
                if writer.is_empty() { "no node yet" } else { &writer }
            ),
        );
        if let Ok(value) = hyper::header::HeaderValue::from_str(&writer) {
            response.headers_mut().insert(WRITER_HEADER, value);
        }
        return response;
    }
    match (&request.method, what) {
        (&Method::GET, "config") => {
            let query = |key: &str| {
                request
                    .uri
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')))
                    .unwrap_or_default()
                    .to_owned()
            };
            let after = query("after");
            let generation = query("generation").parse().unwrap_or(0);
            match deliveries.newer_than(extension, &after, generation, LONG_POLL).await {
                Some(delivery) => match serde_json::to_vec(&*delivery) {
                    Ok(json) => Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(json)))
                        .expect("a valid response"),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
                },
                None => text(StatusCode::NO_CONTENT, ""),
            }
        }
        (&Method::POST, "reports") => match serde_json::from_slice::<TaskReport>(body) {
            Ok(report) => match deliveries.accept_report(extension, report) {
                Ok(()) => text(StatusCode::NO_CONTENT, ""),
                Err(reason) => text(StatusCode::UNPROCESSABLE_ENTITY, &format!("report not taken: {reason}\n")),
            },
            Err(e) => text(StatusCode::BAD_REQUEST, &format!("not a task report: {e}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `response` with the core's MAC over its status and body, bound to the request's nonce.
async fn sign(response: Response<Full<Bytes>>, token: &str, extension: &str, nonce: &str) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(never) => match never {},
    };
    let mac = token::response_mac(token, extension, nonce, parts.status.as_u16(), &body);
    parts.headers.insert(RESPONSE_MAC_HEADER, hyper::header::HeaderValue::from_str(&mac).expect("a hex MAC"));
    Response::from_parts(parts, Full::new(body))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(hash: &str) -> Delivery {
        Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: hash.into(),
            generation: 1,
            files: vec![],
            clear_dirs: vec![],
            check: vec!["nginx".into(), "-t".into()],
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
            checked_with: String::new(),
        }
    }

    fn report(task: &str, hash: &str) -> TaskReport {
        TaskReport {
            task: task.into(),
            node: "lb-00".into(),
            container: "c".into(),
            hash: hash.into(),
            generation: 0,
            rejected: None,
            error: None,
            applied_at: 1,
            took_ms: 5,
        }
    }

    const NOW: u64 = 1_700_000_000;

    /// A request as an extension signs it: `token` over `method`, `target`, `body`, at `ts`
    /// with `nonce`.
    fn signed(token: &str, method: &str, target: &str, body: &[u8], ts: u64, nonce: &str) -> Request<Full<Bytes>> {
        let extension = target.strip_prefix("/v1/extensions/").and_then(|r| r.split('/').next()).unwrap();
        let mac = token::request_mac(token, &SignedRequest { extension, method, target, timestamp: ts, nonce, body });
        let auth = Authorization { timestamp: ts, nonce: nonce.into(), mac };
        Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::AUTHORIZATION, auth.header())
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap()
    }

    fn nonce(n: u32) -> String {
        format!("{n:032x}")
    }

    /// A writer keyed with `key`, serving `delivery("a")` to us-east.
    fn writer() -> Deliveries {
        let d = Deliveries::default();
        d.set_key("key".into());
        d.set_serving(Serving::Writer);
        d.publish(&delivery("a"));
        d
    }

    fn east() -> String {
        token::extension_token("key", "us-east")
    }

    const CONFIG: &str = "/v1/extensions/us-east/config?after=&generation=0";
    const REPORTS: &str = "/v1/extensions/us-east/reports";

    /// The answer's status and body, after checking its MAC with `token` for `nonce`.
    async fn verified(response: Response<Full<Bytes>>, token: &str, nonce: &str) -> (StatusCode, String) {
        let status = response.status();
        let mac =
            response.headers().get(RESPONSE_MAC_HEADER).expect("a MAC on the answer").to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(mac, token::response_mac(token, "us-east", nonce, status.as_u16(), &body), "the answer's MAC");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn refused(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        assert!(response.headers().get(RESPONSE_MAC_HEADER).is_none(), "a refusal is not signed");
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn only_the_extensions_own_token_is_accepted() {
        let d = Deliveries::default();
        let token = reconcilers::token::extension_token("key", "us-east");
        assert!(!d.authorized("us-east", &token), "no key, no access");
        d.set_key("key".into());
        assert!(d.authorized("us-east", &token));
        assert!(!d.authorized("us-west", &token), "one extension's token opens no other cluster");
        assert!(!d.authorized("us-east", ""));
    }

    #[tokio::test]
    async fn a_signed_request_is_answered_and_the_answer_is_signed() {
        let d = writer();
        let request = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(1));
        let (status, body) = verified(respond_at(&d, request, NOW).await, &east(), &nonce(1)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(serde_json::from_str::<Delivery>(&body).unwrap(), delivery("a"));
        // Within the allowed skew either way.
        let early = signed(&east(), "GET", "/v1/extensions/us-east/nope", b"", NOW + MAX_SKEW_SECS, &nonce(2));
        assert_eq!(verified(respond_at(&d, early, NOW).await, &east(), &nonce(2)).await.0, StatusCode::NOT_FOUND);
        // A standby's 503 and an empty 204 are signed too.
        d.set_serving(Serving::Standby("manager-1".into()));
        let request = signed(&east(), "GET", CONFIG, b"", NOW - MAX_SKEW_SECS, &nonce(3));
        let response = respond_at(&d, request, NOW).await;
        assert_eq!(response.headers()[WRITER_HEADER], "manager-1");
        assert_eq!(verified(response, &east(), &nonce(3)).await.0, StatusCode::SERVICE_UNAVAILABLE);
        d.set_serving(Serving::Writer);
        d.set_tasks("us-east", [("t1".to_owned(), "lb-00".to_owned())].into());
        let body = serde_json::to_vec(&report("t1", "a")).unwrap();
        let request = signed(&east(), "POST", REPORTS, &body, NOW, &nonce(4));
        assert_eq!(verified(respond_at(&d, request, NOW).await, &east(), &nonce(4)).await.0, StatusCode::NO_CONTENT);
        assert_eq!(d.tasks("us-east")["t1"], report("t1", "a"));
    }

    #[tokio::test]
    async fn forged_stale_replayed_and_bearer_requests_are_refused() {
        let d = writer();
        let west = token::extension_token("key", "us-west");
        let unauthorized = async |request| {
            let (status, body) = refused(respond_at(&d, request, NOW).await).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            body
        };
        // A MAC over something else than what is sent.
        let mut changed = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(1));
        *changed.uri_mut() = "/v1/extensions/us-east/config?after=&generation=9".parse().unwrap();
        assert!(unauthorized(changed).await.contains("not this extension's"));
        let mut garbled = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(1));
        let header = garbled.headers()[hyper::header::AUTHORIZATION].to_str().unwrap().replace("mac=", "mac=0");
        let header = header[..header.len() - 1].to_owned();
        garbled.headers_mut().insert(hyper::header::AUTHORIZATION, header.parse().unwrap());
        assert!(unauthorized(garbled).await.contains("not this extension's"));
        // Another extension's token, for this extension's config.
        assert!(unauthorized(signed(&west, "GET", CONFIG, b"", NOW, &nonce(2))).await.contains("not this extension's"));
        // Too old and too far ahead.
        let stale = signed(&east(), "GET", CONFIG, b"", NOW - MAX_SKEW_SECS - 1, &nonce(3));
        assert!(unauthorized(stale).await.contains("301 s from the core's clock"));
        let ahead = signed(&east(), "GET", CONFIG, b"", NOW + 3_600, &nonce(4));
        assert!(unauthorized(ahead).await.contains("3600 s"));
        // Accepted once, refused again.
        let first = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(5));
        assert_eq!(respond_at(&d, first, NOW).await.status(), StatusCode::OK);
        let again = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(5));
        assert!(unauthorized(again).await.contains("replayed"));
        // Signed before this core started: its nonce was an earlier process's to remember.
        d.refuse_signed_before(NOW);
        let before = signed(&east(), "GET", CONFIG, b"", NOW - 1, &nonce(8));
        assert!(unauthorized(before).await.contains("before this core started"));
        d.refuse_signed_before(0);
        // An extension from before signing, and none at all.
        let bearer = Request::get(CONFIG)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", east()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(unauthorized(bearer).await.contains("older than the core"));
        let bare = Request::get(CONFIG).body(Full::new(Bytes::new())).unwrap();
        assert!(unauthorized(bare).await.contains("Interlock-HMAC"));
        // No key, nobody.
        let keyless = Deliveries::default();
        let request = signed(&east(), "GET", CONFIG, b"", NOW, &nonce(6));
        assert_eq!(refused(respond_at(&keyless, request, NOW).await).await.0, StatusCode::UNAUTHORIZED);
        // A body over the bound is not read.
        let big = vec![b' '; MAX_REPORT + 1];
        let request = signed(&east(), "POST", REPORTS, &big, NOW, &nonce(7));
        assert_eq!(refused(respond_at(&d, request, NOW).await).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn nonces_are_kept_for_twice_the_skew_and_bounded() {
        let mut nonces = Nonces::default();
        assert_eq!(nonces.admit("us-east", "n1", NOW), Ok(()));
        assert_eq!(nonces.admit("us-west", "n1", NOW), Ok(()), "per extension");
        assert_eq!(nonces.admit("us-east", "n1", NOW + 2 * MAX_SKEW_SECS), Err(NonceRefusal::Replayed));
        // Past the window the request's time alone refuses it; the nonce is forgotten.
        assert_eq!(nonces.admit("us-east", "n2", NOW + 2 * MAX_SKEW_SECS + 1), Ok(()));
        assert!(!nonces.by_extension["us-east"].seen.contains("n1"));
        assert!(!nonces.by_extension.contains_key("us-west"), "an idle extension's window goes");
        for n in 0..MAX_NONCES - 1 {
            nonces.admit("us-east", &nonce(n as u32), NOW + 2 * MAX_SKEW_SECS + 1).unwrap();
        }
        assert_eq!(nonces.admit("us-east", "one more", NOW + 2 * MAX_SKEW_SECS + 1), Err(NonceRefusal::Full));
        assert_eq!(nonces.admit("us-west", "n1", NOW + 2 * MAX_SKEW_SECS + 1), Ok(()), "others are not refused");
        assert_eq!(nonces.admit("us-east", "one more", NOW + 5 * MAX_SKEW_SECS), Ok(()), "aged out");
    }

    #[tokio::test]
    async fn reports_are_taken_only_for_known_running_tasks_on_their_node() {
        let d = writer();
        let mut n = 0;
        let mut post = async |report: &TaskReport| {
            n += 1;
            let body = serde_json::to_vec(report).unwrap();
            let request = signed(&east(), "POST", REPORTS, &body, NOW, &nonce(n));
            verified(respond_at(&d, request, NOW).await, &east(), &nonce(n)).await
        };
        let (status, body) = post(&report("t1", "a")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("no pass yet"), "{body}");
        d.set_tasks("us-east", [("t1".to_owned(), "lb-00".to_owned()), ("t2".to_owned(), "lb-01".to_owned())].into());
        let (status, body) = post(&report("invented", "a")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("invented is not a running task of us-east's proxy service"), "{body}");
        let (status, body) = post(&report("t2", "a")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("task t2 runs on node lb-01, not on lb-00"), "{body}");
        assert!(d.tasks("us-east").is_empty(), "nothing refused is recorded");
        assert_eq!(post(&report("t1", "a")).await.0, StatusCode::NO_CONTENT);
        assert_eq!(post(&TaskReport { node: "lb-01".into(), ..report("t2", "a") }).await.0, StatusCode::NO_CONTENT);
        assert_eq!(d.tasks("us-east").len(), 2);
        // A pass without t2: its report goes, and it may no longer report.
        d.set_tasks("us-east", [("t1".to_owned(), "lb-00".to_owned())].into());
        assert_eq!(d.tasks("us-east").keys().collect::<Vec<_>>(), ["t1"]);
        assert_eq!(
            post(&TaskReport { node: "lb-01".into(), ..report("t2", "a") }).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Another extension's tasks are not this one's.
        assert!(d.accept_report("us-west", report("t1", "a")).unwrap_err().contains("no pass yet"));
        // A standby forgets them: its first pass as the writer lists them again.
        d.set_serving(Serving::Standby(String::new()));
        d.set_serving(Serving::Writer);
        assert!(d.accept_report("us-east", report("t1", "a")).unwrap_err().contains("no pass yet"));
    }

    #[test]
    fn a_rejection_holds_once_the_same_task_reported_it_twice() {
        let d = Deliveries::default();
        d.set_tasks("us-east", [("t1", "lb-00"), ("t2", "lb-00")].map(|(t, n)| (t.to_owned(), n.to_owned())).into());
        let rejecting = |task: &str, hash: &str| TaskReport {
            rejected: Some(hash.into()),
            error: Some("unknown directive".into()),
            ..report(task, "old")
        };
        d.accept_report("us-east", rejecting("t1", "a")).unwrap();
        assert!(d.rejected("us-east", "a").is_none(), "once may be the write's failure");
        d.accept_report("us-east", rejecting("t2", "a")).unwrap();
        assert!(d.rejected("us-east", "a").is_none(), "two tasks once each: not the same task twice");
        d.accept_report("us-east", rejecting("t1", "b")).unwrap();
        assert!(d.rejected("us-east", "a").is_none() && d.rejected("us-east", "b").is_none());
        d.accept_report("us-east", rejecting("t1", "a")).unwrap();
        let reason = d.rejected("us-east", "a").expect("t1 rejected a twice");
        assert_eq!(reason, "the proxy task t1 on lb-00 rejected it: unknown directive");
        assert!(d.rejected("us-east", "b").is_none(), "counted per hash");
        // The task takes it after all: no longer held.
        d.accept_report("us-east", report("t1", "a")).unwrap();
        assert!(d.rejected("us-east", "a").is_none());
        // Twice for t2, then t2 is gone.
        d.accept_report("us-east", rejecting("t2", "a")).unwrap();
        assert!(d.rejected("us-east", "a").is_some());
        d.set_tasks("us-east", [("t1".to_owned(), "lb-00".to_owned())].into());
        assert!(d.rejected("us-east", "a").is_none(), "a gone task holds nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_extension_gets_a_new_config_at_once_and_nothing_when_it_has_the_latest() {
        let d = Arc::new(Deliveries::default());
        assert!(d.newer_than("us-east", "", 0, Duration::from_secs(1)).await.is_none());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.newer_than("us-east", "", 0, LONG_POLL).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        d.publish(&delivery("a"));
        assert_eq!(waiter.await.unwrap().unwrap().hash, "a");
        assert!(d.newer_than("us-east", "a", 1, Duration::from_secs(1)).await.is_none(), "it has the latest");
        assert_eq!(d.newer_than("us-east", "old", 0, Duration::from_secs(1)).await.unwrap().hash, "a");
        d.publish(&delivery("a"));
        d.publish(&Delivery { generation: 2, ..delivery("b") });
        assert_eq!(d.current("us-east").unwrap().hash, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn served_generations_never_go_back_and_a_task_ahead_wakes_the_loop() {
        let d = Arc::new(Deliveries::default());
        d.publish(&Delivery { generation: 5, ..delivery("e") });
        d.publish(&Delivery { generation: 4, ..delivery("d") });
        assert_eq!(d.current("us-east").unwrap().generation, 5, "an older generation is not served");
        // A task at generation 5 is not offered 5 again, whatever its hash.
        let wait = Duration::from_secs(1);
        assert!(d.newer_than("us-east", "e", 5, wait).await.is_none());
        // A task runs generation 6 (an earlier writer's config): the writer learns it and the
        // loop is woken, and nothing older than 6 is offered.
        let woken = tokio::spawn({
            let d = d.clone();
            async move { d.behind().await }
        });
        tokio::task::yield_now().await;
        assert!(d.newer_than("us-east", "x", 6, wait).await.is_none());
        tokio::time::timeout(wait, woken).await.expect("the loop is woken").unwrap();
        assert_eq!(d.known()["us-east"], (6, "x".to_owned()));
        d.publish(&Delivery { generation: 7, ..delivery("f") });
        assert_eq!(d.newer_than("us-east", "x", 6, wait).await.unwrap().generation, 7);
        // A task on another config at the served generation 7 (two writers a moment apart):
        // the generation is marked split, so the next pass renders 8.
        assert!(d.newer_than("us-east", "y", 7, wait).await.is_none());
        assert_eq!(d.known()["us-east"], (7, String::new()));
        // A generation far past anything served is not believed.
        assert!(d.newer_than("us-east", "z", u64::MAX, wait).await.is_none());
        assert_eq!(d.known()["us-east"], (7, String::new()));
    }

    #[tokio::test]
    async fn a_standby_serves_nothing_and_names_the_writer() {
        let d = Deliveries::default();
        d.publish(&delivery("a"));
        d.set_serving(Serving::Standby("manager-1".into()));
        assert!(d.current("us-east").is_none(), "what it served is forgotten");
        d.set_serving(Serving::Writer);
        assert!(d.current("us-east").is_none(), "served again only once published afresh");
    }

    #[test]
    fn reports_say_which_tasks_are_pending_and_what_a_task_rejected() {
        let d = Deliveries::default();
        let on_lb = |tasks: &[&str]| tasks.iter().map(|t| ((*t).to_owned(), "lb-00".to_owned())).collect();
        d.set_tasks("us-east", on_lb(&["t1", "t2", "t3"]));
        d.accept_report("us-east", report("t1", "a")).unwrap();
        let mut bad = report("t2", "old");
        bad.rejected = Some("a".into());
        bad.error = Some("unknown directive".into());
        d.accept_report("us-east", bad.clone()).unwrap();
        d.accept_report("us-east", bad).unwrap();
        let tasks: BTreeSet<String> = ["t1".to_owned(), "t2".to_owned(), "t3".to_owned()].into();
        assert_eq!(d.pending("us-east", "a", &tasks), ["t2", "t3"]);
        assert!(d.rejected("us-east", "a").unwrap().contains("unknown directive"));
        assert!(d.rejected("us-east", "b").is_none());
        d.set_tasks("us-east", on_lb(&["t1"]));
        assert_eq!(d.tasks("us-east").len(), 1);
    }
}
