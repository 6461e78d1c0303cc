//! What the loop knows, served over HTTP on `ListenAddr` (`/health`, `/status`) and logged when
//! it changes: quarantined services, held clusters, failing clusters, and for hitless clusters
//! the config served and each proxy task's report. The same listener is the core's endpoint
//! that extension services are told about (`/v1/extensions/…`, see [`crate::delivery`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reconcilers::plan::Plan;
use serde::Serialize;
use tracing::{info, warn};

use crate::delivery::{Deliveries, TaskReport};

/// The state of the last pass, per extension.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Passes run, including those that could not read the swarm.
    pub passes: u64,
    /// Writes done by all passes.
    pub writes: u64,
    /// Why the last pass could not run, until one does.
    pub pass_error: Option<String>,
    pub extensions: BTreeMap<String, ExtensionStatus>,
}

/// Why an extension's routes are not all as the labels ask.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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
    current.pass_error = None;
    current.extensions = next;
}

/// Records a pass that could not run (the swarm could not be read); the last known state of
/// each extension stays.
pub fn record_failed_pass(status: &SharedStatus, error: &str) {
    let mut current = status.lock().expect("status lock");
    current.passes += 1;
    current.pass_error = Some(error.to_owned());
}

/// Serves `/health`, `/status` and the extensions' API on `addr` until the task is aborted. A
/// port already taken is logged, not fatal: the loop matters more than its window.
pub async fn serve(addr: String, status: SharedStatus, deliveries: Arc<Deliveries>) {
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!("status endpoint not served: cannot listen on {addr}: {e}");
            return;
        }
    };
    info!("status on http://{addr}/status");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (status, deliveries) = (status.clone(), deliveries.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let (status, deliveries) = (status.clone(), deliveries.clone());
                async move {
                    Ok::<_, Infallible>(if request.uri().path().starts_with("/v1/extensions/") {
                        crate::delivery::respond(&deliveries, request).await
                    } else {
                        respond(request.uri().path(), &status, &deliveries)
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn respond(path: &str, status: &SharedStatus, deliveries: &Deliveries) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        "/health" => (200, "text/plain", "ok\n".to_owned()),
        "/status" => {
            let mut snapshot = status.lock().expect("status lock").clone();
            for (name, ext) in &mut snapshot.extensions {
                ext.served_config = deliveries.current(name).map(|d| d.hash.clone());
                ext.tasks = deliveries.tasks(name);
            }
            let json = serde_json::to_string_pretty(&snapshot).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            (200, "application/json", json + "\n")
        }
        _ => (404, "text/plain", "not found; try /status or /health\n".to_owned()),
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
    use reconcilers::plan::ClusterPlan;
    use reconcilers::routes::Quarantined;

    #[test]
    fn records_quarantines_and_serves_them() {
        let status = SharedStatus::default();
        let mut plan = Plan::default();
        plan.clusters.insert(
            "us-east".into(),
            ClusterPlan {
                quarantined: vec![Quarantined { service: "bad".into(), reason: "port".into() }],
                ..ClusterPlan::default()
            },
        );
        record(&status, &plan, &BTreeMap::new(), 2);
        let deliveries = Deliveries::default();
        let response = respond("/status", &status, &deliveries);
        assert_eq!(response.status(), 200);
        let snapshot = status.lock().unwrap().clone();
        assert_eq!(snapshot.writes, 2);
        assert_eq!(snapshot.extensions["us-east"].quarantined, ["bad: port"]);
        assert_eq!(respond("/health", &status, &deliveries).status(), 200);
        assert_eq!(respond("/nope", &status, &deliveries).status(), 404);
    }
}
