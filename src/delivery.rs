//! The core's side of `HitlessServiceUpdate`: the configs it serves to its extensions, and what
//! the extensions report back about each proxy task.
//!
//! The reconciler publishes a hitless cluster's config here once the proxy binary has accepted
//! it ([`Deliveries::publish`]); each extension long-polls `GET /v1/extensions/NAME/config`
//! (answered as soon as a config newer than the one it has exists) and reports every task it
//! wrote to with `POST /v1/extensions/NAME/reports`. Both need the extension's token
//! (`Authorization: Bearer`), derived from a manager-only key (`reconcilers::token`), so an
//! extension can read only its own cluster's config. Served on `ListenAddr` beside `/status`.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use reconcilers::desired::Delivery;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long a config request waits for a newer config before answering 204.
pub const LONG_POLL: Duration = Duration::from_secs(25);
/// Largest report body accepted.
const MAX_REPORT: usize = 64 * 1024;

/// What an extension says about one proxy task after writing a config into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The Swarm task ID.
    pub task: String,
    pub node: String,
    pub container: String,
    /// The config the task runs now (after a rejection: the one it kept).
    pub hash: String,
    /// Its delivery's generation (0: the config the task was started with).
    #[serde(default)]
    pub generation: u64,
    /// The config it was asked to take, when the task's binary rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The binary's or the write's error, with `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix time (seconds) the task took `hash`.
    pub applied_at: u64,
    /// Milliseconds from receiving the config to the reload signal.
    pub took_ms: u64,
}

/// One extension's served config and its tasks' reports.
#[derive(Default)]
struct Cluster {
    config: Option<watch::Sender<Option<Arc<Delivery>>>>,
    tasks: BTreeMap<String, TaskReport>,
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

/// The header a standby names the writer's node in.
pub const WRITER_HEADER: &str = "x-interlock-writer";

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
}

impl Deliveries {
    /// The key tokens derive from (the swarm's manager join token, read by `main`).
    pub fn set_key(&self, key: String) {
        *self.key.lock().expect("key lock") = key;
    }

    pub fn key(&self) -> String {
        self.key.lock().expect("key lock").clone()
    }

    /// Whether `token` is `extension`'s. No key: nobody is.
    pub fn authorized(&self, extension: &str, token: &str) -> bool {
        let key = self.key();
        !key.is_empty() && reconcilers::token::same_token(token, &reconcilers::token::extension_token(&key, extension))
    }

    /// Whether this replica serves (set by every pass).
    pub fn set_serving(&self, serving: Serving) {
        let mut current = self.serving.lock().expect("serving lock");
        if *current == serving {
            return;
        }
        if serving != Serving::Writer {
            // What a standby served once must not be served again when it next writes: it
            // publishes afresh from its first pass as the writer.
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
        let mut known = self.known.lock().expect("known lock");
        let entry = known.entry(extension.to_owned()).or_insert((0, String::new()));
        if generation > entry.0 {
            *entry = (generation, hash.to_owned());
        }
        drop(known);
        self.current(extension).is_some_and(|served| served.generation <= generation && served.hash != hash)
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

    /// Records a task's report.
    pub fn report(&self, extension: &str, report: TaskReport) {
        if let Some(error) = &report.error {
            warn!(extension, task = %report.task, node = %report.node, "a proxy task did not take the config: {error}");
        }
        if self.learn(extension, report.generation, &report.hash) {
            self.behind.notify_one();
        }
        let mut clusters = self.clusters.lock().expect("deliveries lock");
        clusters.entry(extension.to_owned()).or_default().tasks.insert(report.task.clone(), report);
    }

    /// Forgets reports of tasks that no longer run.
    pub fn retain_tasks(&self, extension: &str, running: &BTreeSet<String>) {
        if let Some(cluster) = self.clusters.lock().expect("deliveries lock").get_mut(extension) {
            cluster.tasks.retain(|task, _| running.contains(task));
        }
    }

    /// The last report of each task of `extension`.
    pub fn tasks(&self, extension: &str) -> BTreeMap<String, TaskReport> {
        self.clusters.lock().expect("deliveries lock").get(extension).map(|c| c.tasks.clone()).unwrap_or_default()
    }

    /// Why a task's own binary rejected config `hash` of `extension`, if one did.
    pub fn rejected(&self, extension: &str, hash: &str) -> Option<String> {
        let clusters = self.clusters.lock().expect("deliveries lock");
        clusters.get(extension)?.tasks.values().find(|r| r.rejected.as_deref() == Some(hash)).map(|r| {
            format!(
                "the proxy task {} on {} rejected it: {}",
                r.task,
                r.node,
                r.error.as_deref().unwrap_or("no reason")
            )
        })
    }

    /// `tasks` running proxy tasks that have not reported `hash` yet.
    pub fn pending(&self, extension: &str, hash: &str, tasks: &BTreeSet<String>) -> Vec<String> {
        let reports = self.tasks(extension);
        tasks.iter().filter(|t| reports.get(*t).is_none_or(|r| r.hash != hash)).cloned().collect()
    }
}

/// Answers a request under `/v1/extensions/`.
pub async fn respond(deliveries: &Deliveries, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let Some((extension, what)) = path.strip_prefix("/v1/extensions/").and_then(|rest| rest.split_once('/')) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let extension = extension.to_owned();
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !deliveries.authorized(&extension, token) {
        return text(StatusCode::UNAUTHORIZED, "this token is not the extension's\n");
    }
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
    match (request.method(), what) {
        (&Method::GET, "config") => {
            let query = |key: &str| {
                request
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')))
                    .unwrap_or_default()
                    .to_owned()
            };
            let after = query("after");
            let generation = query("generation").parse().unwrap_or(0);
            match deliveries.newer_than(&extension, &after, generation, LONG_POLL).await {
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
        (&Method::POST, "reports") => {
            let body = match http_body_util::Limited::new(request.into_body(), MAX_REPORT).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("{e}\n")),
            };
            match serde_json::from_slice::<TaskReport>(&body) {
                Ok(report) => {
                    deliveries.report(&extension, report);
                    text(StatusCode::NO_CONTENT, "")
                }
                Err(e) => text(StatusCode::BAD_REQUEST, &format!("not a task report: {e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
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
        d.report("us-east", report("t1", "a"));
        let mut bad = report("t2", "old");
        bad.rejected = Some("a".into());
        bad.error = Some("unknown directive".into());
        d.report("us-east", bad);
        let tasks: BTreeSet<String> = ["t1".to_owned(), "t2".to_owned(), "t3".to_owned()].into();
        assert_eq!(d.pending("us-east", "a", &tasks), ["t2", "t3"]);
        assert!(d.rejected("us-east", "a").unwrap().contains("unknown directive"));
        assert!(d.rejected("us-east", "b").is_none());
        d.retain_tasks("us-east", &["t1".to_owned()].into());
        assert_eq!(d.tasks("us-east").len(), 1);
    }
}
