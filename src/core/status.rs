//! What the loop knows, and `interlock status`: the state of the last pass per extension
//! ([`Status`]: quarantined services, held clusters, failing clusters), recorded after each pass
//! and logged when it changes; the liveness and readiness it implies; and the client that
//! fetches it from a running core and prints it as a table ([`fetch`], [`table`]).
//!
//! The core serves it on `ListenAddr` (`crate::core::server`): `/status` as JSON, `/health`
//! from [`liveness`], `/ready` from [`readiness`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reconcilers::plan::Plan;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::extension_api::TaskReport;

/// The environment variable holding the token that opens `/status` and `/metrics` to others
/// than loopback peers.
pub const ADMIN_TOKEN_ENV: &str = "INTERLOCK_ADMIN_TOKEN";

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
    /// ACME, by host: the certificate served (not-after, days left), the order's state, its last
    /// error and next try. Absent without ACME hosts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acme: BTreeMap<String, crate::core::acme::HostStatus>,
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

/// Records each ACME host's state (what the writer's orderer knows; a standby shows what its
/// passes saw of the certificates).
pub fn record_acme(status: &SharedStatus, hosts: BTreeMap<String, crate::core::acme::HostStatus>) {
    status.lock().expect("status lock").acme = hosts;
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
    if !status.acme.is_empty() {
        out.push_str("\nACME certificates\n");
        let mut rows =
            vec![["HOST", "DAYS LEFT", "NOT AFTER", "ORDER", "NEXT TRY", "LAST ERROR"].map(str::to_owned).to_vec()];
        for (host, acme) in &status.acme {
            let days = acme.not_after.map(|t| (t as i64 - now_unix as i64).div_euclid(86_400));
            rows.push(vec![
                host.clone(),
                days.map_or("-".to_owned(), |d| d.to_string()),
                acme.not_after
                    .map_or("-".to_owned(), |t| reconcilers::acme::rfc3339(UNIX_EPOCH + Duration::from_secs(t))),
                format!(
                    "{} ({})",
                    serde_json::to_value(acme.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    acme.decision
                ),
                acme.next_try.map_or("-".to_owned(), |t| {
                    if t > now_unix { format!("in {}", age(t - now_unix)) } else { "now".to_owned() }
                }),
                acme.last_error.clone().unwrap_or_else(|| "-".to_owned()),
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

    #[test]
    fn the_status_table_shows_days_left_per_acme_host() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "passes": 1,
            "last_success": 0,
            "acme": {
                "a.example.com": {"not_after": 86_400 * 40, "decision": "keep", "state": "issued"},
                "b.example.com": {
                    "decision": "order", "state": "failed", "failures": 2,
                    "last_error": "validating b.example.com failed: connection refused", "next_try": 120
                }
            }
        }))
        .unwrap();
        let text = table(&status, 0);
        let acme = &text[text.find("ACME certificates").expect(&text)..];
        assert_eq!(
            acme,
            "\
ACME certificates
  HOST           DAYS LEFT  NOT AFTER             ORDER           NEXT TRY  LAST ERROR
  a.example.com  40         1970-02-10T00:00:00Z  issued (keep)   -         -
  b.example.com  -          -                     failed (order)  in 2m00s  validating b.example.com failed: connection refused
"
        );
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
