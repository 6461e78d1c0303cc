//! The ACME client (RFC 8555): an account on a directory, one order per host answered by HTTP-01,
//! and the issued chain with its new key. The only module that knows the ACME crate
//! (`instant-acme`); what it hands out are plain types ([`AccountCredentials`], [`Http01Answer`],
//! [`Issued`], [`AcmeError`]), so the orderer (which publishes answers and stores results) does
//! not.
//!
//! One order goes: [`AcmeClient::order`] (the CA's challenge: publish its [`Http01Answer`] on
//! every proxy of the host's cluster) → [`PendingOrder::ready`] (once the proxies serve it: the
//! CA validates now) → [`PendingOrder::finish`] (poll until the order is ready, finalize with a
//! CSR for a new P-256 key, poll until the certificate is issued, download the chain).
//!
//! The HTTPS client is ours, not the crate's default: it trusts exactly the `CACertificate` when
//! one is given (a private CA such as pebble), else the system's roots; it bounds every request
//! in time; and it keeps the `Retry-After` of the last answer, which the crate drops from its
//! errors and which a rate-limited order must wait for.
//!
//! Private keys (the account's, the certificate's) are never logged: the types that hold them
//! print `[redacted]` in their `Debug`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use hyper::header::RETRY_AFTER;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, Problem,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::time::Instant;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::der;
use crate::retry::Backoff;

/// How long one request to the CA may take (connect, TLS, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Polling an order while the CA validates or issues: 0.5 s doubling to 5 s (validation takes
/// seconds; a `Retry-After` from the CA wins), until [`PendingOrder::finish`]'s timeout.
const POLL: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
/// After a failed order, the orderer's next try for that host (`docs/design/acme.md`): 1 min
/// doubling to 1 h.
pub const AFTER_FAILED_ORDER: Backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(3_600));
/// The longest `Retry-After` honoured: a CA's (or a broken proxy's) far future does not park a
/// host for longer than a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// RFC 8555's problem type of a rate limit.
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
/// RFC 8555's problem type of an account the CA does not know.
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// RFC 8555's problem types (§6.7) of a validation that failed: the answer was wrong or not
/// served, or the host could not be reached.
const VALIDATION_FAILED: [&str; 6] = [
    "urn:ietf:params:acme:error:unauthorized",
    "urn:ietf:params:acme:error:incorrectResponse",
    "urn:ietf:params:acme:error:connection",
    "urn:ietf:params:acme:error:dns",
    "urn:ietf:params:acme:error:tls",
    "urn:ietf:params:acme:error:caa",
];

/// Why an account, an order or an issuance failed. Each is local to its host: the orderer
/// retries it after [`AcmeError::next_try`].
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// `CACertificate` holds no usable certificate, or the system has no roots.
    #[error("the ACME server's trusted roots: {0}")]
    Roots(String),
    /// Stored credentials that do not parse, or belong to another directory.
    #[error("the stored ACME account: {0}")]
    Account(String),
    /// Not a name HTTP-01 can prove (a wildcard, an IP address, not a DNS name).
    #[error("{0:?} cannot be ordered over HTTP-01: not a DNS name without wildcards")]
    Host(String),
    /// The CA answered with a rate limit (`rateLimited`).
    #[error("rate limited by the ACME server: {detail}")]
    RateLimited { detail: String, retry_after: Option<SystemTime> },
    /// The CA refused a request (any other problem document).
    #[error("the ACME server refused: {detail}")]
    Refused { kind: Option<String>, detail: String, retry_after: Option<SystemTime> },
    /// The CA offered no HTTP-01 challenge for the host.
    #[error("the ACME server offers no http-01 challenge for {0}")]
    NoHttp01(String),
    /// The CA could not validate the host (its answer was not served, or not reached): the order
    /// is invalid, nothing is issued.
    #[error("validating {host} failed: {detail}")]
    ChallengeFailed { host: String, detail: String },
    /// [`PendingOrder::finish`] before [`PendingOrder::ready`] on an order with a challenge.
    #[error("the order for {0} was finished before its challenge was declared ready")]
    NotReady(String),
    /// The order did not become ready or valid within the time given.
    #[error("the order for {host} was still {state} after {waited:?}")]
    Timeout { host: String, state: String, waited: Duration },
    /// The network, TLS, or an answer that is not ACME.
    #[error("talking to the ACME server: {0}")]
    Transport(String),
    /// Making the key or CSR, or reading the issued chain.
    #[error("the certificate: {0}")]
    Certificate(String),
}

impl AcmeError {
    /// When the CA asked to be asked again (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// How long the orderer waits before its next try for this host after `failures` failed
    /// orders in a row: the CA's `Retry-After` when it gave one (at most a day), else
    /// [`AFTER_FAILED_ORDER`].
    pub fn next_try(&self, failures: u32, now: SystemTime) -> Duration {
        match self.retry_after() {
            Some(at) => at.duration_since(now).unwrap_or_default().min(MAX_RETRY_AFTER),
            None => AFTER_FAILED_ORDER.delay(failures),
        }
    }

    /// The CA does not know the stored account (it was deactivated, or the CA lost its state, as a
    /// restarted pebble does): the orderer makes a new account and stores it.
    pub fn account_unknown(&self) -> bool {
        matches!(self, Self::Refused { kind: Some(kind), .. } if kind == ACCOUNT_DOES_NOT_EXIST)
    }

    /// A refusal of a challenge's "ready" that says the validation already failed, as the
    /// challenge's failure: a CA may validate before it answers that POST (pebble without its
    /// random delay did, in this project's CI), and then says so there rather than in the
    /// order's state `finish` reads. Anything else as it is.
    fn challenge_failed(self, host: &str) -> Self {
        match self {
            Self::Refused { kind: Some(kind), detail, .. } if VALIDATION_FAILED.contains(&kind.as_str()) => {
                Self::ChallengeFailed { host: host.to_owned(), detail }
            }
            other => other,
        }
    }

    fn from_acme(error: instant_acme::Error, retry_after: Option<SystemTime>) -> Self {
        match error {
            instant_acme::Error::Api(problem) => Self::from_problem(&problem, retry_after),
            other => Self::Transport(other.to_string()),
        }
    }

    fn from_problem(problem: &Problem, retry_after: Option<SystemTime>) -> Self {
        let detail = problem.to_string();
        match problem.r#type.as_deref() {
            Some(RATE_LIMITED) => Self::RateLimited { detail, retry_after },
            kind => Self::Refused { kind: kind.map(str::to_owned), detail, retry_after },
        }
    }
}

/// An ACME account as stored (the account's URL, its private key, its directory: JSON as the
/// crate writes it). Opaque: stored sealed, handed back to [`AcmeClient::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct AccountCredentials(String);

impl AccountCredentials {
    /// Credentials read back from storage (checked when used).
    pub fn from_stored(bytes: Vec<u8>) -> Result<Self, AcmeError> {
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|_| AcmeError::Account("stored credentials are not UTF-8".to_owned()))
    }

    /// What to store (it holds the account's private key: seal it).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The directory URL the account belongs to, as recorded in it.
    fn directory(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.0).ok()?;
        value.get("directory")?.as_str().map(str::to_owned)
    }
}

impl fmt::Debug for AccountCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountCredentials([redacted])")
    }
}

/// An account on one ACME directory, ready to order.
pub struct AcmeClient {
    account: Account,
    directory_url: String,
    retry_after: RetryAfter,
}

impl fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory_url", &self.directory_url)
            .field("account", &self.account.id())
            .finish()
    }
}

impl AcmeClient {
    /// The account on `directory_url`: the stored one (`account`), or a new one (agreeing to the
    /// CA's terms, with `email` as its contact). Trusts `ca_pem` (PEM, one or more certificates)
    /// for the CA's TLS when given, else the system's roots. Returns the new account's
    /// credentials, to be stored, when it made one.
    pub async fn new(
        directory_url: &str,
        ca_pem: Option<&[u8]>,
        email: Option<&str>,
        account: Option<AccountCredentials>,
    ) -> Result<(Self, Option<AccountCredentials>), AcmeError> {
        let retry_after = RetryAfter::default();
        let http = Https::new(tls_config(ca_pem)?, retry_after.clone());
        let builder = Account::builder_with_http(Box::new(http));
        let (account, created) = match account {
            Some(stored) => {
                match stored.directory() {
                    Some(directory) if directory == directory_url => {}
                    other => {
                        return Err(AcmeError::Account(format!(
                            "it belongs to directory {}, not {directory_url}",
                            other.as_deref().unwrap_or("(none recorded)")
                        )));
                    }
                }
                let credentials: instant_acme::AccountCredentials = serde_json::from_str(&stored.0)
                    .map_err(|e| AcmeError::Account(format!("unreadable credentials: {e}")))?;
                let account = builder.from_credentials(credentials).await.map_err(|e| retry_after.error(e))?;
                (account, None)
            }
            None => {
                let contact = email.map(|email| format!("mailto:{email}"));
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
                let (account, credentials) =
                    builder.create(&new, directory_url.to_owned(), None).await.map_err(|e| retry_after.error(e))?;
                let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Account(e.to_string()))?;
                tracing::info!(directory = directory_url, account = account.id(), "created an ACME account");
                (account, Some(AccountCredentials(json)))
            }
        };
        Ok((Self { account, directory_url: directory_url.to_owned(), retry_after }, created))
    }

    /// The account's URL at the CA.
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// A new order for a certificate naming `host` alone, and its HTTP-01 challenge.
    pub async fn order(&self, host: &str) -> Result<PendingOrder, AcmeError> {
        if !is_dns_name(host) {
            return Err(AcmeError::Host(host.to_owned()));
        }
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order =
            self.account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| self.retry_after.error(e))?;
        let mut answer = None;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| self.retry_after.error(e))?;
            match authorization.status {
                // The CA still trusts an earlier validation of this account for this host:
                // nothing to answer.
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    return Err(AcmeError::ChallengeFailed {
                        host: host.to_owned(),
                        detail: format!("the authorization is {status:?}"),
                    });
                }
            }
            let challenge =
                authorization.challenge(ChallengeType::Http01).ok_or_else(|| AcmeError::NoHttp01(host.to_owned()))?;
            answer = Some(Http01Answer {
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_owned(),
            });
        }
        tracing::info!(host, order = order.url(), challenge = answer.is_some(), "ordered an ACME certificate");
        Ok(PendingOrder { host: host.to_owned(), order, answer, told: false, retry_after: self.retry_after.clone() })
    }
}

/// What the proxies serve for an HTTP-01 challenge: `GET /.well-known/acme-challenge/<token>`
/// answers `key_authorization` as `text/plain`. Not a secret: the CA reads it over plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http01Answer {
    pub token: String,
    pub key_authorization: String,
}

/// An order between [`AcmeClient::order`] and [`PendingOrder::finish`].
pub struct PendingOrder {
    host: String,
    order: Order,
    answer: Option<Http01Answer>,
    /// Whether the CA was told the answer is served.
    told: bool,
    retry_after: RetryAfter,
}

impl fmt::Debug for PendingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOrder")
            .field("host", &self.host)
            .field("url", &self.order.url())
            .field("answer", &self.answer)
            .finish()
    }
}

impl PendingOrder {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The order's URL at the CA.
    pub fn url(&self) -> &str {
        self.order.url()
    }

    /// The answer to publish before [`ready`](Self::ready); `None` when the CA needs none (it
    /// still holds a valid authorization of this account for the host).
    pub fn answer(&self) -> Option<&Http01Answer> {
        self.answer.as_ref()
    }

    /// Tells the CA the answer is served: it validates now. Nothing to do without a challenge.
    pub async fn ready(&mut self) -> Result<(), AcmeError> {
        if self.answer.is_none() || self.told {
            return Ok(());
        }
        let mut authorizations = self.order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| self.retry_after.error(e))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge =
                authorization.challenge(ChallengeType::Http01).ok_or_else(|| AcmeError::NoHttp01(self.host.clone()))?;
            challenge.set_ready().await.map_err(|e| self.retry_after.error(e).challenge_failed(&self.host))?;
        }
        self.told = true;
        Ok(())
    }

    /// Waits (at most `timeout` in all) for the CA to validate, finalizes the order with a CSR
    /// for a new P-256 key, waits for the certificate and downloads its chain.
    pub async fn finish(mut self, timeout: Duration) -> Result<Issued, AcmeError> {
        if self.answer.is_some() && !self.told {
            return Err(AcmeError::NotReady(self.host));
        }
        let started = Instant::now();
        let deadline = started + timeout;
        match self.poll(deadline, started, |s| !matches!(s, OrderStatus::Pending)).await? {
            OrderStatus::Ready => {}
            OrderStatus::Invalid => return Err(self.why_invalid().await),
            // Finalized by someone else (this order is only ever finalized here, with a key
            // that exists only here): a certificate whose key nobody has.
            other => {
                return Err(AcmeError::Certificate(format!("the order is already {other:?}, finalized elsewhere")));
            }
        }

        // A new key for each certificate: a renewal never reuses the key of the one it replaces.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AcmeError::Certificate(format!("making a key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec![self.host.clone()])
            .map_err(|e| AcmeError::Certificate(format!("the CSR's name: {e}")))?;
        // The name is in the SAN; the CA ignores a subject (and Let's Encrypt drops it).
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| AcmeError::Certificate(format!("making the CSR: {e}")))?;
        self.order.finalize_csr(csr.der()).await.map_err(|e| self.retry_after.error(e))?;

        let status = self
            .poll(deadline, started, |s| {
                !matches!(s, OrderStatus::Pending | OrderStatus::Ready | OrderStatus::Processing)
            })
            .await?;
        if status != OrderStatus::Valid {
            return Err(self.why_invalid().await);
        }
        let chain_pem = self
            .order
            .certificate()
            .await
            .map_err(|e| self.retry_after.error(e))?
            .ok_or_else(|| AcmeError::Certificate("the CA sent no certificate".to_owned()))?;
        let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .ok_or_else(|| AcmeError::Certificate("the chain holds no certificate".to_owned()))?
            .map_err(|e| AcmeError::Certificate(format!("the chain's PEM: {e}")))?;
        let not_after = der::not_after(&leaf).map_err(AcmeError::Certificate)?;
        tracing::info!(host = %self.host, not_after = %reconcilers::acme::rfc3339(not_after), "ACME certificate issued");
        Ok(Issued { host: self.host, chain_pem, key_pem: key.serialize_pem(), not_after })
    }

    /// Refreshes the order until `done` holds of its status, waiting between refreshes as the CA
    /// asks (`Retry-After`) or by [`POLL`]; a timeout once `deadline` passes.
    async fn poll(
        &mut self,
        deadline: Instant,
        started: Instant,
        done: impl Fn(OrderStatus) -> bool,
    ) -> Result<OrderStatus, AcmeError> {
        let mut polls = 0;
        loop {
            let state = self.order.refresh().await.map_err(|e| self.retry_after.error(e))?;
            let status = state.status;
            if let Some(problem) = &state.error
                && status != OrderStatus::Invalid
            {
                return Err(AcmeError::from_problem(problem, self.retry_after.get()));
            }
            if done(status) {
                return Ok(status);
            }
            polls += 1;
            let now = Instant::now();
            let wait = match self.retry_after.get() {
                Some(at) => at.duration_since(SystemTime::now()).unwrap_or_default().min(POLL.max),
                None => POLL.delay(polls),
            };
            if now + wait > deadline {
                return Err(AcmeError::Timeout {
                    host: self.host.clone(),
                    state: format!("{status:?}").to_lowercase(),
                    waited: now - started,
                });
            }
            tracing::debug!(host = %self.host, ?status, ?wait, "ACME order not done yet");
            tokio::time::sleep(wait).await;
        }
    }

    /// Why the order is invalid: the order's problem, else the failed challenge's.
    async fn why_invalid(&mut self) -> AcmeError {
        let host = self.host.clone();
        let mut detail = self.order.state().error.as_ref().map(ToString::to_string);
        if detail.is_none() {
            let mut authorizations = self.order.authorizations();
            while let Some(Ok(mut authorization)) = authorizations.next().await {
                if let Ok(state) = authorization.refresh().await
                    && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
                {
                    detail = Some(problem.to_string());
                    break;
                }
            }
        }
        AcmeError::ChallengeFailed { host, detail: detail.unwrap_or_else(|| "the order is invalid".to_owned()) }
    }
}

/// An issued certificate: what its secret holds, and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub host: String,
    /// The leaf, then the intermediates, PEM (as the CA sent them).
    pub chain_pem: String,
    /// The certificate's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

impl Issued {
    /// What the certificate's secret holds: the chain, then the key (`docs/design/acme.md`).
    pub fn secret_pem(&self) -> Vec<u8> {
        let mut pem = self.chain_pem.clone().into_bytes();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(self.key_pem.as_bytes());
        pem
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("host", &self.host)
            .field("not_after", &reconcilers::acme::rfc3339(self.not_after))
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &format_args!("[redacted]"))
            .finish()
    }
}

/// A DNS name an HTTP-01 order can prove: labels of letters, digits and dashes, at least two, no
/// wildcard, not an IP address.
fn is_dns_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    host.len() <= 253
        && labels.len() >= 2
        && host.parse::<std::net::IpAddr>().is_err()
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The `Retry-After` of the last answer from the CA, shared by an account's requests. The
/// crate drops it from its errors, so the HTTPS client keeps it. Orders of one account that run
/// at once may see each other's: a hint at most a request old, and a CA's rate limits are mostly
/// per account anyway.
#[derive(Debug, Clone, Default)]
struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    fn set(&self, at: Option<SystemTime>) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    fn get(&self) -> Option<SystemTime> {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The crate's error, typed, with the last `Retry-After`.
    fn error(&self, error: instant_acme::Error) -> AcmeError {
        AcmeError::from_acme(error, self.get())
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110, 10.2.3).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(now + Duration::from_secs(seconds)),
        Err(_) => httpdate(value),
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
fn httpdate(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month)?
        + 1;
    let time = time.replace(':', "");
    let text = format!("{year:0>4}{month:02}{day:0>2}{time}Z");
    der::generalized_time(&text).ok()
}

/// The HTTPS client the crate sends its requests through.
struct Https {
    client: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfter,
}

impl Https {
    fn new(tls: ClientConfig, retry_after: RetryAfter) -> Self {
        // HTTPS only: RFC 8555 (6.1) requires it of every ACME request.
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Self { client: HyperClient::builder(TokioExecutor::new()).build(connector), retry_after }
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        request: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(request);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, response)
                .await
                .map_err(|_| instant_acme::Error::Other(format!("no answer within {REQUEST_TIMEOUT:?}").into()))?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let at = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            retry_after.set(at);
            Ok(BytesResponse::from(response))
        })
    }
}

/// The roots the client trusts: `ca_pem`'s certificates alone when given, else the system's.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<ClientConfig, AcmeError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|e| AcmeError::Roots(format!("CACertificate: {e}")))?;
                roots.add(certificate).map_err(|e| AcmeError::Roots(format!("CACertificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(AcmeError::Roots("CACertificate holds no PEM certificate".to_owned()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(AcmeError::Roots(format!("the system has no trusted roots ({:?})", native.errors)));
            }
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dns_names_are_ordered() {
        for host in ["a.example.test", "x-1.b.example.com", "EXAMPLE.com"] {
            assert!(is_dns_name(host), "{host}");
        }
        for host in
            ["*.example.test", "localhost", "127.0.0.1", "a..test", "-a.test", "a.test-", "a b.test", "a.test/x", ""]
        {
            assert!(!is_dns_name(host), "{host}");
        }
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(now + Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 CET", now), None);
    }

    #[test]
    fn a_rate_limit_is_typed_and_its_retry_after_wins() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let problem: Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates", "status": 429}"#,
        )
        .unwrap();
        let error = AcmeError::from_problem(&problem, Some(now + Duration::from_secs(3_600 * 5)));
        assert!(matches!(error, AcmeError::RateLimited { .. }), "{error:?}");
        assert!(error.to_string().contains("too many certificates"));
        assert_eq!(error.next_try(1, now), Duration::from_secs(3_600 * 5), "Retry-After wins over the backoff");
        let far = AcmeError::from_problem(&problem, Some(now + Duration::from_secs(86_400 * 30)));
        assert_eq!(far.next_try(1, now), MAX_RETRY_AFTER);

        let problem: Problem =
            serde_json::from_str(r#"{"type": "urn:ietf:params:acme:error:malformed", "detail": "no"}"#).unwrap();
        let error = AcmeError::from_problem(&problem, None);
        assert!(matches!(&error, AcmeError::Refused { kind: Some(k), .. } if k.ends_with("malformed")));
        assert!(!error.account_unknown());
        let problem: Problem =
            serde_json::from_str(r#"{"type": "urn:ietf:params:acme:error:accountDoesNotExist", "detail": "gone"}"#)
                .unwrap();
        assert!(AcmeError::from_problem(&problem, None).account_unknown());
        // A challenge the CA validated before answering its "ready": the challenge's failure.
        let problem: Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:unauthorized", "detail": "http://a.test/.well-known/acme-challenge/x returned 404"}"#,
        )
        .unwrap();
        let failed = AcmeError::from_problem(&problem, None).challenge_failed("a.test");
        assert!(
            matches!(&failed, AcmeError::ChallengeFailed { host, detail } if host == "a.test" && detail.contains("404")),
            "{failed:?}"
        );
        let malformed = AcmeError::from_problem(
            &serde_json::from_str(r#"{"type": "urn:ietf:params:acme:error:malformed"}"#).unwrap(),
            None,
        );
        assert!(matches!(malformed.challenge_failed("a.test"), AcmeError::Refused { .. }), "malformed stays a refusal");
        assert_eq!(
            (1..=8).map(|n| error.next_try(n, now).as_secs()).collect::<Vec<_>>(),
            [60, 120, 240, 480, 960, 1_920, 3_600, 3_600]
        );
    }

    #[test]
    fn keys_are_never_printed() {
        let issued = Issued {
            host: "a.example.test".into(),
            chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n".into(),
            not_after: SystemTime::UNIX_EPOCH,
        };
        let printed = format!("{issued:?}");
        assert!(!printed.contains("SECRET") && printed.contains("[redacted]"), "{printed}");
        assert!(
            String::from_utf8(issued.secret_pem())
                .unwrap()
                .contains("-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----")
        );
        let credentials = AccountCredentials::from_stored(br#"{"key_pkcs8": "SECRET"}"#.to_vec()).unwrap();
        assert_eq!(format!("{credentials:?}"), "AccountCredentials([redacted])");
    }

    #[test]
    fn a_ca_certificate_must_hold_a_certificate() {
        assert!(matches!(tls_config(Some(b"not a pem")), Err(AcmeError::Roots(_))));
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        assert!(tls_config(Some(ca.pem().as_bytes())).is_ok());
    }
}
