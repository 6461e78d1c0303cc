//! The core's API as the extension calls it ([`CoreClient`]): every request signed under the
//! extension's token, every answer's MAC checked before its body is used, each address of the
//! core's name tried in turn until the writer answers (standbys and whatever is not the core
//! are passed over). Used for configs ([`ConfigSource`]) and reports.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reconcilers::desired::Delivery;
use reconcilers::token::{Authorization, RESPONSE_MAC_HEADER, SignedRequest, request_mac, response_mac, same_token};
use tracing::{debug, warn};

use super::{ExtensionError, Settings};
use crate::extension_api::{TaskReport, WRITER_HEADER};

/// A config request waits this long at most (the core answers within `delivery::LONG_POLL`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(11);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer body read: whatever answers is not trusted until its MAC is checked.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// A failed call to the core.
#[derive(Debug, thiserror::Error)]
pub(super) enum CoreError {
    #[error("cannot reach the core at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "no address of {endpoint} answered as the core (no valid {RESPONSE_MAC_HEADER}: not the core, or a core with another key); {answers}"
    )]
    NotCore {
        endpoint: String,
        /// The addresses that answered, and how.
        answers: String,
    },
    #[error("the core replicas reached ({replicas}) are standbys; they say the writer is {writer}")]
    OnlyStandbys {
        /// The addresses that answered as standbys.
        replicas: String,
        /// Where they say the writer is.
        writer: String,
    },
    #[error(
        "the core refused the extension's token (a token of an earlier key? the service is updated with a new one)"
    )]
    Unauthorized,
    #[error("the core answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the core's answer is not a config: {0}")]
    Undecodable(#[from] serde_json::Error),
}

/// One address's answer to a call, its MAC checked.
#[derive(Debug)]
enum Answer {
    /// From the writer (or a core that predates replicas): the status and body.
    Served(StatusCode, Bytes),
    /// A standby replica, naming the writer's node ("" when it does not know).
    Standby { writer: String },
}

/// The core's API, as the extension calls it.
pub(super) struct CoreClient {
    extension: String,
    endpoint: String,
    host: String,
    port: u16,
    token: String,
    /// The address that last answered as the writer: tried first, so a call does not usually
    /// cost a standby a request too.
    writer: Mutex<Option<SocketAddr>>,
    /// Answers without a valid MAC so far: warned about at the first and every 20th.
    not_core: AtomicU64,
}

impl CoreClient {
    pub(super) fn new(settings: &Settings) -> Result<Self, ExtensionError> {
        let endpoint = settings.endpoint.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = endpoint
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| ExtensionError::Endpoint(settings.endpoint.clone()))?;
        Ok(Self {
            extension: settings.extension.clone(),
            endpoint: endpoint.to_owned(),
            host,
            port,
            token: settings.token.clone(),
            writer: Mutex::new(None),
            not_core: AtomicU64::new(0),
        })
    }

    pub(super) async fn report(&self, report: &TaskReport) -> Result<(), CoreError> {
        let path = format!("/v1/extensions/{}/reports", self.extension);
        let body = Bytes::from(serde_json::to_vec(report)?);
        match self.call(Method::POST, &path, body).await? {
            (status, _) if status.is_success() => Ok(()),
            (StatusCode::UNAUTHORIZED, _) => Err(CoreError::Unauthorized),
            (status, body) => Err(CoreError::Status { status, body: String::from_utf8_lossy(&body).into_owned() }),
        }
    }

    /// Where the core answers. A bare service name is tried as `tasks.NAME` first: Docker's DNS
    /// gives the tasks' own addresses (every replica's), which work without the service VIP's
    /// IPVS (a VIP-mode core, as the walk-through creates it, and a dnsrr one alike); then as
    /// the name itself. The last writer comes first.
    async fn addresses(&self) -> Vec<SocketAddr> {
        let bare_name = !self.host.contains('.') && self.host.parse::<std::net::IpAddr>().is_err();
        let mut names = Vec::new();
        if bare_name {
            names.push(format!("tasks.{}", self.host));
        }
        names.push(self.host.clone());
        let mut out = Vec::new();
        for name in names {
            if let Ok(found) = tokio::net::lookup_host((name.as_str(), self.port)).await {
                out.extend(found.filter(|a| !out.contains(a)).collect::<Vec<_>>());
            }
        }
        writer_first(&mut out, *self.writer.lock().expect("writer lock"));
        out
    }

    /// The writer's answer: standbys, and whatever answers without the core's MAC, are passed
    /// over for the next address.
    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), CoreError> {
        let addresses = self.addresses().await;
        self.call_first_writer(&addresses, method, path, body).await
    }

    async fn call_first_writer(
        &self,
        addresses: &[SocketAddr],
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), CoreError> {
        let mut last = "the name does not resolve".to_owned();
        let mut standbys: Vec<(SocketAddr, String)> = Vec::new();
        let mut not_core: Vec<String> = Vec::new();
        for &addr in addresses {
            match self.call_at(addr, method.clone(), path, body.clone()).await {
                Ok(Answer::Served(status, body)) => {
                    *self.writer.lock().expect("writer lock") = Some(addr);
                    return Ok((status, body));
                }
                Ok(Answer::Standby { writer }) => {
                    debug!(%addr, writer, "a standby core replica answered; trying the next address");
                    standbys.push((addr, writer));
                }
                Err(CallError::NotCore(reason)) => {
                    let seen = self.not_core.fetch_add(1, Ordering::Relaxed) + 1;
                    if seen == 1 || seen.is_multiple_of(20) {
                        warn!(%addr, seen, "an answer that is not the core's ({reason}); ignored, trying the next address");
                    }
                    not_core.push(format!("{addr}: {reason}"));
                }
                Err(CallError::Connect(reason)) => last = format!("{addr}: {reason}"),
                // Something that hangs or speaks no HTTP on the core's name must not stop the
                // search for the core: the next address is tried, and this one is no longer
                // taken for the writer.
                Err(CallError::Exchange(reason)) => {
                    let mut writer = self.writer.lock().expect("writer lock");
                    if *writer == Some(addr) {
                        *writer = None;
                    }
                    last = format!("{addr}: {reason}");
                }
            }
        }
        if standbys.is_empty() {
            if !not_core.is_empty() {
                return Err(CoreError::NotCore { endpoint: self.endpoint.clone(), answers: not_core.join("; ") });
            }
            return Err(self.unreachable(last));
        }
        let replicas = standbys.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>().join(", ");
        let named: BTreeSet<&str> = standbys.iter().map(|(_, w)| w.as_str()).filter(|w| !w.is_empty()).collect();
        let writer = if named.is_empty() {
            "not known to them (no writer elected yet?)".to_owned()
        } else {
            format!("on node {}", named.into_iter().collect::<Vec<_>>().join(" or "))
        };
        Err(CoreError::OnlyStandbys { replicas, writer })
    }

    fn unreachable(&self, reason: String) -> CoreError {
        CoreError::Unreachable { endpoint: self.endpoint.clone(), reason }
    }

    /// One signed request to one address; its answer only if the core's MAC on it is valid.
    async fn call_at(&self, addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Result<Answer, CallError> {
        let nonce = random_nonce().map_err(|e| CallError::Exchange(format!("no random nonce: {e}")))?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let signed = SignedRequest {
            extension: &self.extension,
            method: method.as_str(),
            target: path,
            timestamp,
            nonce: &nonce,
            body: &body,
        };
        let authorization = Authorization { timestamp, nonce: nonce.clone(), mac: request_mac(&self.token, &signed) };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(CallError::Connect(e.to_string())),
            Err(_) => return Err(CallError::Connect(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.as_str())
            .header(hyper::header::AUTHORIZATION, authorization.header())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::Exchange(e.to_string()))?;
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| CallError::Exchange(e.to_string()))?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(|e| CallError::Exchange(e.to_string()))?;
            let status = response.status();
            let header = |name: &str| {
                response.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            };
            let (writer, mac) = (header(WRITER_HEADER), header(RESPONSE_MAC_HEADER));
            // Bounded: nothing about this answer is trusted yet.
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::NotCore(format!("answered {status}, unreadable: {e}")))?
                .to_bytes();
            if !answer_is_from_core(&self.token, &self.extension, &nonce, status, &body, mac.as_deref()) {
                let how = if mac.is_some() { "an invalid" } else { "no" };
                // The core signs only requests it authenticated: its 401 is unsigned.
                let hint = if status == StatusCode::UNAUTHORIZED {
                    " (if the core: it does not take this extension's token, one of an earlier key? the service is updated with a new one)"
                } else {
                    ""
                };
                return Err(CallError::NotCore(format!("answered {status} with {how} {RESPONSE_MAC_HEADER}{hint}")));
            }
            if status == StatusCode::SERVICE_UNAVAILABLE
                && let Some(writer) = writer
            {
                return Ok(Answer::Standby { writer });
            }
            Ok(Answer::Served(status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(CallError::Exchange(format!("no answer in {} s", REQUEST_TIMEOUT.as_secs()))),
        }
    }
}

/// Whether an answer carries the core's MAC for the request that sent `nonce`: under this
/// extension's token, over this extension, nonce, status and body. So neither another server, nor
/// an answer to another request (an older delivery), nor a changed body passes.
fn answer_is_from_core(
    token: &str,
    extension: &str,
    nonce: &str,
    status: StatusCode,
    body: &[u8],
    mac: Option<&str>,
) -> bool {
    mac.is_some_and(|mac| same_token(mac, &response_mac(token, extension, nonce, status.as_u16(), body)))
}

/// 16 random bytes from the kernel, hex: a request's nonce.
fn random_nonce() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why one address gave no answer.
enum CallError {
    /// Nothing listens there (the next address is tried).
    Connect(String),
    /// Something answered, but not with the core's MAC: not the core (the next address is tried).
    NotCore(String),
    /// It took the request and failed it.
    Exchange(String),
}

/// Where configs come from: the core ([`CoreClient`]), or a fake in tests.
pub(super) trait ConfigSource {
    /// A config newer than `after` (hash) at `generation`; `None` when there is none yet.
    fn config(&self, after: &str, generation: u64) -> impl Future<Output = Result<Option<Delivery>, CoreError>> + Send;
}

impl ConfigSource for CoreClient {
    /// The served config if newer than `after` at `generation`; `None` when the core has
    /// nothing newer.
    async fn config(&self, after: &str, generation: u64) -> Result<Option<Delivery>, CoreError> {
        // A hash is hex (a core's); anything else would not survive in a URL.
        let after = if after.bytes().all(|b| b.is_ascii_hexdigit()) { after } else { "" };
        let path = format!("/v1/extensions/{}/config?after={after}&generation={generation}", self.extension);
        let (status, body) = self.call(Method::GET, &path, Bytes::new()).await?;
        match status {
            StatusCode::OK => Ok(Some(serde_json::from_slice(&body)?)),
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::UNAUTHORIZED => Err(CoreError::Unauthorized),
            status => Err(CoreError::Status { status, body: String::from_utf8_lossy(&body).into_owned() }),
        }
    }
}

/// Moves `writer` to the front of `addresses`, the others keeping their order.
fn writer_first(addresses: &mut [SocketAddr], writer: Option<SocketAddr>) {
    if let Some(at) = writer.and_then(|w| addresses.iter().position(|a| *a == w)) {
        addresses[..=at].rotate_right(1);
    }
}
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::extension::fixtures::{HASH, TOKEN, delivery, settings};

    #[test]
    fn endpoints_are_host_and_port() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("interlock", 8080));
        let core = CoreClient::new(&settings("http://10.0.0.2:9090/")).unwrap();
        assert_eq!((core.host.as_str(), core.port), ("10.0.0.2", 9090));
        assert!(CoreClient::new(&settings("interlock")).is_err());
    }

    #[test]
    fn the_last_writer_is_tried_first() {
        let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:8080".parse().unwrap();
        let mut addresses = [a, b, c];
        writer_first(&mut addresses, Some(c));
        assert_eq!(addresses, [c, a, b]);
        writer_first(&mut addresses, Some("10.0.0.9:8080".parse().unwrap()));
        assert_eq!(addresses, [c, a, b], "a writer no longer resolved changes nothing");
        writer_first(&mut addresses, None);
        assert_eq!(addresses, [c, a, b]);
    }

    /// Serves HTTP on loopback: every connection's request (head, and body when it came with it)
    /// goes to `answer`, which gives the whole response.
    async fn serve(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
        let answer = Arc::new(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = answer(&String::from_utf8_lossy(&request));
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    /// The request's `Authorization`, parsed.
    fn authorization(request: &str) -> Authorization {
        let value = request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .unwrap_or_else(|| panic!("no authorization in {request}"));
        Authorization::parse(value.trim()).unwrap_or_else(|| panic!("not Interlock-HMAC: {value}"))
    }

    /// How a test server signs its answer.
    #[derive(Clone, Copy)]
    enum Signing {
        /// As the core: the extension's token, the request's nonce, the body sent.
        Valid,
        /// No MAC header.
        None,
        /// A valid MAC over another body than the one sent.
        TamperedBody,
        /// Under another extension's token.
        OtherToken,
        /// Valid for another request's nonce: a replayed answer.
        Replayed,
    }

    /// An HTTP answer `status` (`"204 No Content"`) with `headers` and `body`, signed as `signing`
    /// says for the request `request`.
    fn signed(request: &str, signing: Signing, status: &str, headers: &str, body: &str) -> String {
        let nonce = authorization(request).nonce;
        let code: u16 = status[..3].parse().unwrap();
        let other_token = reconcilers::token::extension_token("key", "us-west");
        let mac = match signing {
            Signing::Valid => Some(response_mac(TOKEN, "us-east", &nonce, code, body.as_bytes())),
            Signing::None => None,
            Signing::TamperedBody => Some(response_mac(TOKEN, "us-east", &nonce, code, b"{}")),
            Signing::OtherToken => Some(response_mac(&other_token, "us-east", &nonce, code, body.as_bytes())),
            Signing::Replayed => {
                Some(response_mac(TOKEN, "us-east", "00112233445566778899aabbccddeeff", code, body.as_bytes()))
            }
        };
        let mac = mac.map(|m| format!("{RESPONSE_MAC_HEADER}: {m}\r\n")).unwrap_or_default();
        format!("HTTP/1.1 {status}\r\n{headers}{mac}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    #[test]
    fn only_the_cores_mac_for_this_request_makes_an_answer_the_cores() {
        let nonce = "ab".repeat(16);
        let body = br#"{"hash":"abc"}"#;
        let mac = response_mac(TOKEN, "us-east", &nonce, 200, body);
        let ok = |token: &str, status: StatusCode, body: &[u8], mac: Option<&str>| {
            answer_is_from_core(token, "us-east", &nonce, status, body, mac)
        };
        assert!(ok(TOKEN, StatusCode::OK, body, Some(&mac)), "the core's");
        assert!(!ok(TOKEN, StatusCode::OK, br#"{"hash":"abd"}"#, Some(&mac)), "a tampered body");
        assert!(!ok(TOKEN, StatusCode::NO_CONTENT, body, Some(&mac)), "another status");
        assert!(!ok(TOKEN, StatusCode::OK, body, None), "no MAC");
        let other = reconcilers::token::extension_token("key", "us-west");
        let theirs = response_mac(&other, "us-east", &nonce, 200, body);
        assert!(!ok(TOKEN, StatusCode::OK, body, Some(&theirs)), "another extension's token");
        let replayed = response_mac(TOKEN, "us-east", &"cd".repeat(16), 200, body);
        assert!(!ok(TOKEN, StatusCode::OK, body, Some(&replayed)), "an answer to another request");
        let nonces: BTreeSet<String> = (0..100).map(|_| random_nonce().unwrap()).collect();
        assert_eq!(nonces.len(), 100);
        assert!(nonces.iter().all(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn requests_are_signed_and_never_carry_the_token() {
        let token = reconcilers::token::extension_token("key", "us-east");
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let addr = serve(move |request| {
            record.lock().unwrap().push(request.to_owned());
            let nonce = authorization(request).nonce;
            let mac = response_mac(&reconcilers::token::extension_token("key", "us-east"), "us-east", &nonce, 204, b"");
            format!("HTTP/1.1 204 No Content\r\n{RESPONSE_MAC_HEADER}: {mac}\r\nconnection: close\r\n\r\n")
        })
        .await;
        let core = CoreClient::new(&Settings { token: token.clone(), ..settings(&addr.to_string()) }).unwrap();
        assert_eq!(core.config(HASH, 7).await.unwrap(), None);
        assert_eq!(core.config(HASH, 7).await.unwrap(), None);
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        let target = format!("/v1/extensions/us-east/config?after={HASH}&generation=7");
        let mut nonces = BTreeSet::new();
        for request in &requests {
            assert!(request.starts_with(&format!("GET {target} HTTP/1.1")), "{request}");
            assert!(!request.contains(&token) && !request.contains("Bearer"), "the token on the wire: {request}");
            let auth = authorization(request);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert!(auth.timestamp.abs_diff(now) < 10);
            let signed = SignedRequest {
                extension: "us-east",
                method: "GET",
                target: &target,
                timestamp: auth.timestamp,
                nonce: &auth.nonce,
                body: b"",
            };
            assert_eq!(auth.mac, request_mac(&token, &signed));
            nonces.insert(auth.nonce);
        }
        assert_eq!(nonces.len(), 2, "a fresh nonce each time");
    }

    #[tokio::test]
    async fn answers_without_the_cores_mac_are_passed_over_and_never_used() {
        let config = serde_json::to_string(&delivery(HASH, 9)).unwrap();
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        let path = "/v1/extensions/us-east/config";
        let the_core = {
            let config = config.clone();
            serve(move |r| signed(r, Signing::Valid, "200 OK", "", &config)).await
        };
        for signing in [Signing::None, Signing::TamperedBody, Signing::OtherToken, Signing::Replayed] {
            let evil =
                serde_json::to_string(&Delivery { proxy_service: "victim".into(), ..delivery(HASH, 10) }).unwrap();
            let impostor = serve(move |r| signed(r, signing, "200 OK", "", &evil)).await;
            let err = core.call_first_writer(&[impostor], Method::GET, path, Bytes::new()).await.unwrap_err();
            assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
            assert!(err.to_string().contains("no address of interlock:8080 answered as the core"), "{err}");
            let (status, body) =
                core.call_first_writer(&[impostor, the_core], Method::GET, path, Bytes::new()).await.unwrap();
            assert_eq!(
                (status, &body[..]),
                (StatusCode::OK, config.as_bytes()),
                "the core's answer, not the impostor's"
            );
            // A standby's 503 counts only when signed too.
            let fake_standby =
                serve(move |r| signed(r, signing, "503 Service Unavailable", "x-interlock-writer: evil\r\n", "")).await;
            let err = core.call_first_writer(&[fake_standby], Method::GET, path, Bytes::new()).await.unwrap_err();
            assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
        }
        assert!(core.not_core.load(Ordering::Relaxed) >= 12);
    }

    #[tokio::test]
    async fn standby_replicas_are_passed_over_for_the_writer() {
        let core = CoreClient::new(&settings("interlock:8080")).unwrap();
        let standby = serve(|r| {
            signed(r, Signing::Valid, "503 Service Unavailable", "x-interlock-writer: manager-2\r\n", "standby\n")
        })
        .await;
        let writer = serve(|r| signed(r, Signing::Valid, "204 No Content", "", "")).await;
        let (status, _) = core
            .call_first_writer(&[standby, writer], Method::GET, "/v1/extensions/us-east/config", Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(*core.writer.lock().unwrap(), Some(writer), "remembered, to be tried first");

        let unknown =
            serve(|r| signed(r, Signing::Valid, "503 Service Unavailable", "x-interlock-writer: \r\n", "")).await;
        let err = core
            .call_first_writer(&[standby, unknown], Method::GET, "/v1/extensions/us-east/config", Bytes::new())
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, CoreError::OnlyStandbys { .. }), "{message}");
        assert!(message.contains("standbys") && message.contains("on node manager-2"), "{message}");
        assert!(message.contains(&standby.to_string()) && message.contains(&unknown.to_string()), "{message}");

        let err = core.call_first_writer(&[unknown], Method::GET, "/", Bytes::new()).await.unwrap_err();
        assert!(err.to_string().contains("not known"), "{err}");

        // A 503 without the header is the core's own answer, returned as is.
        let busy = serve(|r| signed(r, Signing::Valid, "503 Service Unavailable", "", "busy\n")).await;
        let (status, body) = core.call_first_writer(&[busy, writer], Method::GET, "/", Bytes::new()).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::SERVICE_UNAVAILABLE, &b"busy\n"[..]));
    }

    /// The extension's client against the core's real server (`status::serve`), on loopback.
    #[tokio::test]
    async fn the_extension_fetches_its_config_and_reports_with_its_token() {
        let deliveries = Arc::new(crate::core::delivery::Deliveries::default());
        deliveries.set_key("key".into());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = tokio::spawn(crate::core::server::serve(addr.to_string(), Default::default(), deliveries.clone()));
        let token = reconcilers::token::extension_token("key", "us-east");
        let core = CoreClient::new(&Settings { token: token.clone(), ..settings(&addr.to_string()) }).unwrap();
        let delivery = delivery("abc", 1);
        // A replica that has not decided yet is a standby knowing no writer.
        let mut answer = core.config("", 0).await;
        for _ in 0..50 {
            if !matches!(answer, Err(CoreError::Unreachable { .. })) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer = core.config("", 0).await;
        }
        assert!(
            matches!(&answer, Err(CoreError::OnlyStandbys { writer, .. }) if writer.contains("not known")),
            "{answer:?}"
        );
        deliveries.set_serving(crate::core::delivery::Serving::Writer);
        let mut got = None;
        for _ in 0..50 {
            deliveries.publish(&delivery);
            match core.config("", 0).await {
                Ok(d) => {
                    got = d;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert_eq!(got, Some(delivery));
        let report = TaskReport {
            task: "t1".into(),
            node: "n".into(),
            container: "c".into(),
            hash: "abc".into(),
            generation: 1,
            rejected: None,
            error: None,
            applied_at: 1,
            took_ms: 2,
        };
        // Only a task the last pass listed may report.
        let refused = core.report(&report).await.unwrap_err();
        assert!(refused.to_string().contains("no pass yet"), "{refused}");
        deliveries.set_tasks("us-east", BTreeMap::from([("t1".to_owned(), "n".to_owned())]));
        core.report(&report).await.unwrap();
        assert_eq!(deliveries.tasks("us-east")["t1"], report);
        // The core cannot sign its refusal with a token it does not know: not the core, as far as
        // the extension can tell, and said so with the status.
        let other =
            CoreClient::new(&Settings { extension: "us-west".into(), token, ..settings(&addr.to_string()) }).unwrap();
        let refused = other.config("", 0).await.unwrap_err();
        assert!(matches!(refused, CoreError::NotCore { .. }), "a token opens its own cluster only: {refused}");
        assert!(refused.to_string().contains("401"), "{refused}");
        server.abort();
    }
}
