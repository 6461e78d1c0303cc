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

/// Configs served to extensions and their reports. Shared through `Context`.
#[derive(Default)]
pub struct Deliveries {
    key: Mutex<String>,
    clusters: Mutex<BTreeMap<String, Cluster>>,
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

    fn sender(&self, extension: &str) -> watch::Sender<Option<Arc<Delivery>>> {
        let mut clusters = self.clusters.lock().expect("deliveries lock");
        clusters.entry(extension.to_owned()).or_default().config.get_or_insert_with(|| watch::channel(None).0).clone()
    }

    /// Serves `delivery` to its extension from now on; waiting requests are answered at once.
    /// Publishing the config already served does nothing.
    pub fn publish(&self, delivery: &Delivery) {
        let sender = self.sender(&delivery.extension);
        sender.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.hash == delivery.hash) {
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

    /// The served config once it differs from `after`, waiting up to `wait`.
    pub async fn newer_than(&self, extension: &str, after: &str, wait: Duration) -> Option<Arc<Delivery>> {
        let mut receiver = self.sender(extension).subscribe();
        let changed = async {
            loop {
                if let Some(current) = receiver.borrow_and_update().clone()
                    && current.hash != after
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
    match (request.method(), what) {
        (&Method::GET, "config") => {
            let after = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("after=")))
                .unwrap_or_default()
                .to_owned();
            match deliveries.newer_than(&extension, &after, LONG_POLL).await {
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
        assert!(d.newer_than("us-east", "", Duration::from_secs(1)).await.is_none());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.newer_than("us-east", "", LONG_POLL).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        d.publish(&delivery("a"));
        assert_eq!(waiter.await.unwrap().unwrap().hash, "a");
        assert!(d.newer_than("us-east", "a", Duration::from_secs(1)).await.is_none(), "it has the latest");
        assert_eq!(d.newer_than("us-east", "old", Duration::from_secs(1)).await.unwrap().hash, "a");
        d.publish(&delivery("a"));
        d.publish(&delivery("b"));
        assert_eq!(d.current("us-east").unwrap().hash, "b");
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
