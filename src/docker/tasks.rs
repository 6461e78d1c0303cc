//! `GET /tasks`, read without bollard: bollard's `Task` model has no `NetworksAttachments`, and
//! those attachments are the only place the API gives a task's IP on each overlay network.
//!
//! One request per pass over a fresh connection of the same kind bollard uses (unix socket,
//! plain TCP, or TLS with the config's client certificate).

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reconcilers::config::{DockerUrl, TlsFiles};
use reconcilers::observed::TaskFacts;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// How to open a connection to the engine for a raw request.
#[derive(Clone)]
pub(super) enum RawEndpoint {
    Unix(String),
    Tcp(String),
    Tls { addr: String, config: Arc<rustls::ClientConfig> },
}

impl RawEndpoint {
    pub(super) fn new(url: &DockerUrl, tls: &TlsFiles) -> Result<Self, String> {
        Ok(match url {
            DockerUrl::Unix(path) => RawEndpoint::Unix(path.clone()),
            DockerUrl::Tcp(addr) if tls.is_empty() => RawEndpoint::Tcp(addr.clone()),
            DockerUrl::Tcp(addr) => RawEndpoint::Tls { addr: addr.clone(), config: Arc::new(tls_config(tls)?) },
        })
    }

    /// GETs `path` (with its query) and returns the body of a 2xx answer.
    pub(super) async fn get(&self, path: &str) -> Result<Bytes, RawError> {
        match self {
            RawEndpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket).await.map_err(connect)?;
                request(stream, "localhost", path).await
            }
            RawEndpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(connect)?;
                request(stream, addr, path).await
            }
            RawEndpoint::Tls { addr, config } => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h).to_owned();
                let name = ServerName::try_from(host).map_err(connect)?;
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(connect)?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| RawError::Connect(format!("TLS: {e}")))?;
                request(stream, addr, path).await
            }
        }
    }
}

/// Why a raw request failed.
#[derive(Debug)]
pub(super) enum RawError {
    /// No connection, or it broke: worth retrying.
    Connect(String),
    /// The engine answered with an error status.
    Status(u16, String),
}

fn connect(e: impl std::fmt::Display) -> RawError {
    RawError::Connect(e.to_string())
}

async fn request<S>(stream: S, host: &str, path: &str) -> Result<Bytes, RawError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(connect)?;
    let driver = tokio::spawn(connection);
    let request =
        hyper::Request::get(path).header(hyper::header::HOST, host).body(Empty::<Bytes>::new()).map_err(connect)?;
    let response = sender.send_request(request).await.map_err(connect)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(connect)?.to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(RawError::Status(status.as_u16(), String::from_utf8_lossy(&body).trim().to_owned()));
    }
    Ok(body)
}

fn tls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let path = |f: &Option<String>| f.clone().unwrap_or_default();
    let (ca, cert, key) = (path(&tls.ca_cert), path(&tls.cert), path(&tls.key));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(Path::new(&ca)).map_err(|e| format!("{ca}: {e}"))? {
        roots.add(c.map_err(|e| format!("{ca}: {e}"))?).map_err(|e| format!("{ca}: {e}"))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(Path::new(&cert))
        .map_err(|e| format!("{cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(Path::new(&key)).map_err(|e| format!("{key}: {e}"))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())
}

/// The part of the Engine's task JSON the core needs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(rename = "NodeID", default)]
    node_id: String,
    #[serde(default)]
    desired_state: String,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    networks_attachments: Vec<RawAttachment>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    err: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachment {
    network: RawNetwork,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
struct RawNetwork {
    #[serde(rename = "ID")]
    id: String,
}

/// Parses the body of `GET /tasks`.
pub(super) fn parse_tasks(body: &[u8]) -> Result<Vec<TaskFacts>, String> {
    let raw: Vec<RawTask> = serde_json::from_slice(body).map_err(|e| format!("unexpected task JSON: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|t| TaskFacts {
            running: t.desired_state == "running" && t.status.state == "running",
            failed: t.status.state == "failed",
            stuck_pending: t.desired_state == "running"
                && t.status.state == "pending"
                && (t.status.err.contains("host-mode port already in use")
                    // Every node unavailable and no other reason (a constraint, resources):
                    // what a new leader's scheduler says of nodes it has not seen ready yet.
                    || (t.status.err.contains("not available for new tasks") && !t.status.err.contains(';'))),
            addresses: t
                .networks_attachments
                .into_iter()
                .flat_map(|a| {
                    let network = a.network.id;
                    a.addresses.into_iter().map(move |cidr| {
                        (network.clone(), cidr.split_once('/').map_or(cidr.clone(), |(ip, _)| ip.to_owned()))
                    })
                })
                .collect(),
            created: sortable_time(&t.created_at),
            id: t.id,
            service_id: t.service_id,
            node_id: t.node_id,
        })
        .collect())
}

/// The text of a `GET /tasks/ID/logs` body: without a TTY the Engine frames each chunk with an
/// 8-byte header (stream, 3 zero bytes, big-endian length); anything not framed so is taken as
/// it is (a TTY task's raw stream).
pub(super) fn log_text(body: &[u8]) -> String {
    let mut text = Vec::with_capacity(body.len());
    let mut rest = body;
    while rest.len() >= 8 && matches!(rest[0], 0..=2) && rest[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let Some(chunk) = rest.get(8..8 + len) else { break };
        text.extend_from_slice(chunk);
        rest = &rest[8 + len..];
    }
    if text.is_empty() && !body.is_empty() {
        return String::from_utf8_lossy(body).into_owned();
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Docker's RFC 3339 times in UTC (`2026-12-04T21:05:59.1234Z`) drop trailing fraction zeros,
/// so their text does not sort by time; this pads the fraction to nine digits so it does.
/// Anything else is kept as it is.
fn sortable_time(time: &str) -> String {
    let Some(body) = time.strip_suffix('Z') else { return time.to_owned() };
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return time.to_owned();
    }
    format!("{seconds}.{fraction:0<9}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `GET /tasks` answer of Engine 20.10 (API 1.41) in the lab.
    const TASKS_JSON: &str = r#"[
      {"ID":"t1","Version":{"Index":41},"ServiceID":"s1","NodeID":"n1","Slot":1,
       "Status":{"Timestamp":"2026-11-22T03:00:00Z","State":"running","Message":"started"},
       "DesiredState":"running",
       "NetworksAttachments":[
         {"Network":{"ID":"ingress-id","Spec":{"Name":"ingress"}},"Addresses":["10.0.0.5/24"]},
         {"Network":{"ID":"net-1","Spec":{"Name":"demo-east"}},"Addresses":["10.0.2.3/24"]}]},
      {"ID":"t2","ServiceID":"s1","NodeID":"n2","Status":{"State":"shutdown"},"DesiredState":"shutdown"},
      {"ID":"t3","ServiceID":"s1","NodeID":"n2","Status":{"State":"preparing"},"DesiredState":"running"},
      {"ID":"t4","ServiceID":"s1","Status":{"State":"pending","Err":"no suitable node (scheduling constraints not satisfied on 3 nodes; host-mode port already in use on 1 node)"},"DesiredState":"running"},
      {"ID":"t5","ServiceID":"s2","Status":{"State":"pending","Err":"no suitable node (4 nodes not available for new tasks)"},"DesiredState":"running"},
      {"ID":"t6","ServiceID":"s3","Status":{"State":"pending","Err":"no suitable node (scheduling constraints not satisfied on 4 nodes)"},"DesiredState":"running"},
      {"ID":"t7","ServiceID":"s4","Status":{"State":"pending","Err":"no suitable node (scheduling constraints not satisfied on 3 nodes; 1 node not available for new tasks)"},"DesiredState":"running"}
    ]"#;

    #[test]
    fn parses_task_addresses_without_prefix_length() {
        let tasks = parse_tasks(TASKS_JSON.as_bytes()).unwrap();
        assert_eq!(tasks.len(), 7);
        assert!(tasks[0].running);
        assert_eq!(
            tasks[0].addresses,
            [("ingress-id".to_owned(), "10.0.0.5".to_owned()), ("net-1".to_owned(), "10.0.2.3".to_owned())]
        );
        assert!(!tasks[1].running && tasks[1].addresses.is_empty());
        assert!(!tasks[2].running, "a task still preparing does not serve");
        assert!(tasks[3].stuck_pending && !tasks[0].stuck_pending);
        // Seen after an election during a proxy's update: the new leader's scheduler never came back
        // to it although a node fits.
        assert!(tasks[4].stuck_pending, "every node unavailable to a new leader's scheduler");
        assert!(!tasks[5].stuck_pending, "no node fits: a placement the user must change");
        assert!(!tasks[6].stuck_pending, "the node that fits is drained: the user's to undo");
    }

    #[test]
    fn framed_and_raw_logs_read_as_text() {
        let mut framed = vec![2, 0, 0, 0, 0, 0, 0, 6];
        framed.extend_from_slice(b"nginx:");
        framed.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 4]);
        framed.extend_from_slice(b" ok\n");
        assert_eq!(log_text(&framed), "nginx: ok\n");
        assert_eq!(log_text(b"nginx: [emerg] raw\n"), "nginx: [emerg] raw\n");
        assert_eq!(log_text(&[2, 0, 0, 0, 0, 0, 0, 99, b'x']), "\u{2}\0\0\0\0\0\0cx", "a cut frame: as it is");
    }

    #[test]
    fn creation_times_sort_as_text() {
        let times = ["2026-12-04T21:05:59.12Z", "2026-12-04T21:05:59.1Z", "2026-12-04T21:05:59Z"];
        let mut sorted: Vec<String> = times.iter().map(|t| sortable_time(t)).collect();
        sorted.sort();
        assert_eq!(
            sorted,
            ["2026-12-04T21:05:59.000000000Z", "2026-12-04T21:05:59.100000000Z", "2026-12-04T21:05:59.120000000Z"]
        );
    }
}
