//! The orderer (`docs/design/acme.md`, "Who orders"): run by the controller after each pass,
//! only while this replica writes. Per host the last plan orders or renews
//! (`Plan::acme_orders`), one order at a time, at most [`MAX_ORDERS_AT_ONCE`] hosts at once,
//! each host with its own backoff after a failure ([`AcmeError::next_try`]).
//!
//! One order: the account (unsealed from interlock's sealed config, else created and stored),
//! the order, its HTTP-01 answer published ([`AcmeState`], rendered by the next pass), a pass
//! woken, a wait (at most [`ANSWER_WAIT`]) until every cluster serving the host was seen
//! serving a config carrying the answer, `ready`, `finish`, the certificate stored (secret and
//! sealed config), the answer withdrawn, a pass woken.
//!
//! The CA is behind a small seam ([`Ca`], [`CaAccount`], [`CaOrder`]): the ACME client
//! implements it ([`Client`]), the unit tests a fake.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reconcilers::acme;
use reconcilers::config::{AcmeConfig, Config};
use reconcilers::observed::{ConfigDef, SecretDef};
use reconcilers::plan::Plan;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::client::{
    AFTER_FAILED_ORDER, AccountCredentials, AcmeClient, AcmeError, Http01Answer, Issued, PendingOrder,
};
use super::seal::{seal, unseal};
use super::state::{AcmeState, OrderState, unix};
use crate::swarm::{Swarm, SwarmError};

/// Hosts ordered at once, at most.
pub const MAX_ORDERS_AT_ONCE: usize = 4;
/// How long an order waits for the proxies to serve its answer before telling the CA anyway.
pub const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// How long the CA may take to validate and issue.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
/// A host whose certificate was stored this long ago is not ordered again: the plan that says so
/// may have been read before the certificate existed.
pub const JUST_ISSUED: Duration = Duration::from_secs(30);
/// How often an order looks whether the proxies serve its answer.
const SERVED_POLL: Duration = Duration::from_millis(250);

/// A future the seam returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An account, and its credentials to store when it was just made.
pub type AccountAnswer = (Arc<dyn CaAccount>, Option<AccountCredentials>);

/// An ACME server: the account to order with.
pub trait Ca: Send + Sync + 'static {
    /// The account on `acme.directory_url`: the stored one, or (`stored` `None`) a new one
    /// whose credentials come back to be stored.
    fn account<'a>(
        &'a self,
        acme: &'a AcmeConfig,
        stored: Option<AccountCredentials>,
    ) -> BoxFuture<'a, Result<AccountAnswer, AcmeError>>;
}

/// An account, ready to order.
pub trait CaAccount: Send + Sync {
    fn order<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Box<dyn CaOrder>, AcmeError>>;
}

/// One order between its challenge and its certificate.
pub trait CaOrder: Send {
    /// The answer to publish; `None` when the CA needs none.
    fn answer(&self) -> Option<Http01Answer>;
    /// The answer is served: the CA validates now.
    fn ready(&mut self) -> BoxFuture<'_, Result<(), AcmeError>>;
    /// Waits for the CA, finalizes, downloads the chain.
    fn finish(self: Box<Self>, timeout: Duration) -> BoxFuture<'static, Result<Issued, AcmeError>>;
}

/// The real CA: the ACME client ([`AcmeClient`]).
pub struct Client;

impl Ca for Client {
    fn account<'a>(
        &'a self,
        acme: &'a AcmeConfig,
        stored: Option<AccountCredentials>,
    ) -> BoxFuture<'a, Result<AccountAnswer, AcmeError>> {
        Box::pin(async move {
            let ca_pem = trusted_roots(acme)?;
            let (client, created) =
                AcmeClient::new(&acme.directory_url, ca_pem.as_deref(), acme.email.as_deref(), stored).await?;
            Ok((Arc::new(client) as Arc<dyn CaAccount>, created))
        })
    }
}

impl CaAccount for AcmeClient {
    fn order<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Box<dyn CaOrder>, AcmeError>> {
        Box::pin(async move { Ok(Box::new(AcmeClient::order(self, host).await?) as Box<dyn CaOrder>) })
    }
}

impl CaOrder for PendingOrder {
    fn answer(&self) -> Option<Http01Answer> {
        PendingOrder::answer(self).cloned()
    }

    fn ready(&mut self) -> BoxFuture<'_, Result<(), AcmeError>> {
        Box::pin(PendingOrder::ready(self))
    }

    fn finish(self: Box<Self>, timeout: Duration) -> BoxFuture<'static, Result<Issued, AcmeError>> {
        Box::pin(PendingOrder::finish(*self, timeout))
    }
}

/// `CACertificate`'s PEM: an absolute path, else a secret's name read at `/run/secrets/NAME`.
fn trusted_roots(acme: &AcmeConfig) -> Result<Option<Vec<u8>>, AcmeError> {
    let Some(source) = &acme.ca_certificate else { return Ok(None) };
    let path = if source.starts_with('/') { source.clone() } else { format!("/run/secrets/{source}") };
    std::fs::read(&path).map(Some).map_err(|e| AcmeError::Roots(format!("reading CACertificate {path}: {e}")))
}

/// Why one order failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error("storing in the swarm: {0}")]
    Swarm(#[from] SwarmError),
    #[error("no sealing key: the manager join token could not be read")]
    NoKey,
}

impl OrderError {
    fn next_try(&self, failures: u32, now: SystemTime) -> Duration {
        match self {
            OrderError::Acme(e) => e.next_try(failures, now),
            _ => AFTER_FAILED_ORDER.delay(failures),
        }
    }
}

/// The account in use, for one directory.
type CachedAccount = Arc<tokio::sync::Mutex<Option<(String, Arc<dyn CaAccount>)>>>;

/// What every order of this replica shares.
struct Shared<S> {
    swarm: S,
    ca: Arc<dyn Ca>,
    state: Arc<AcmeState>,
    account: CachedAccount,
}

/// Runs the orders of the hosts the passes plan. See the module.
pub struct Orderer<S: Swarm> {
    shared: Arc<Shared<S>>,
    /// By host: its order in progress.
    orders: BTreeMap<String, JoinHandle<()>>,
}

impl<S: Swarm> Orderer<S> {
    /// Orders through `ca`, stores in `swarm`, shares `state` (the `Context`'s).
    pub fn new(swarm: S, ca: Arc<dyn Ca>, state: Arc<AcmeState>) -> Self {
        Self { shared: Arc::new(Shared { swarm, ca, state, account: Arc::default() }), orders: BTreeMap::new() }
    }

    /// After a pass that read the swarm: `writer` says whether this replica writes; `key` is the
    /// manager-only key the extension tokens derive from, which seals what is stored. A
    /// standby, or a config without `[ACME]`, orders nothing (and drops the orders it had).
    pub fn after_pass(&mut self, writer: bool, config: &Config, plan: &Plan, key: &str) {
        self.orders.retain(|_, order| !order.is_finished());
        let Some(acme) = config.acme.clone().filter(|_| writer) else {
            self.stop();
            return;
        };
        let wanted: BTreeMap<String, acme::Decision> =
            plan.acme_orders().into_iter().map(|(h, d)| (h.to_owned(), d)).collect();
        // Hosts no longer to order (a certificate exists now, or nobody asks any more).
        let gone: Vec<String> = self.orders.keys().filter(|h| !wanted.contains_key(*h)).cloned().collect();
        for host in gone {
            if let Some(order) = self.orders.remove(&host) {
                order.abort();
            }
            self.shared.state.withdraw(&host);
        }
        let now = SystemTime::now();
        for host in wanted.keys() {
            if self.orders.contains_key(host) {
                continue;
            }
            let status = self.shared.state.host(host);
            if status.next_try.is_some_and(|t| t > unix(now)) {
                continue;
            }
            // A plan read before the certificate just stored was there still says to order.
            if status.issued_at.is_some_and(|t| t + JUST_ISSUED.as_secs() > unix(now)) {
                continue;
            }
            if self.orders.len() >= MAX_ORDERS_AT_ONCE {
                self.shared.state.update(host, |s| s.state = OrderState::Waiting);
                continue;
            }
            let shared = self.shared.clone();
            let host_owned = host.clone();
            let acme = acme.clone();
            let key = key.to_owned();
            self.shared.state.update(host, |s| s.state = OrderState::Ordering);
            self.orders.insert(host.clone(), tokio::spawn(async move { shared.order(acme, host_owned, key).await }));
        }
    }

    /// Drops every order in progress and withdraws their answers.
    pub fn stop(&mut self) {
        for (_, order) in std::mem::take(&mut self.orders) {
            order.abort();
        }
        self.shared.state.stop_orders();
    }

    /// Hosts with an order in progress.
    pub fn ordering(&self) -> Vec<String> {
        self.orders.iter().filter(|(_, o)| !o.is_finished()).map(|(h, _)| h.clone()).collect()
    }
}

impl<S: Swarm> Drop for Orderer<S> {
    fn drop(&mut self) {
        for order in self.orders.values() {
            order.abort();
        }
    }
}

impl<S: Swarm> Shared<S> {
    /// One order for `host`, its outcome recorded in the state and the metrics.
    async fn order(self: Arc<Self>, acme: AcmeConfig, host: String, key: String) {
        let result = self.try_order(&acme, &host, &key).await;
        self.state.withdraw(&host);
        let now = SystemTime::now();
        match result {
            Ok(name) => {
                self.state.count_order("issued");
                self.state.update(&host, |s| {
                    s.state = OrderState::Issued;
                    s.failures = 0;
                    s.last_error = None;
                    s.next_try = None;
                    s.issued_at = Some(unix(now));
                    s.certificate = Some(name);
                });
            }
            Err(e) => {
                self.state.count_order("failed");
                let failures = self.state.host(&host).failures.saturating_add(1);
                let wait = e.next_try(failures, now);
                warn!(host = %host, failures, retry_in_s = wait.as_secs(), "ACME order failed: {e}");
                self.state.update(&host, |s| {
                    s.state = OrderState::Failed;
                    s.failures = failures;
                    s.last_error = Some(e.to_string());
                    s.next_try = Some(unix(now + wait));
                });
            }
        }
        self.state.wake_pass();
    }

    async fn try_order(&self, acme: &AcmeConfig, host: &str, key: &str) -> Result<String, OrderError> {
        if key.is_empty() {
            return Err(OrderError::NoKey);
        }
        let account = self.account(acme, key).await?;
        let mut order = account.order(host).await?;
        if let Some(answer) = order.answer() {
            self.state.update(host, |s| s.state = OrderState::Answering);
            self.state.publish(host, &answer);
            self.state.wake_pass();
            let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
            while !self.state.serves(&answer.token, host) {
                if tokio::time::Instant::now() >= deadline {
                    warn!(
                        host,
                        "the proxies were not all seen serving the ACME answer within {ANSWER_WAIT:?}: asking the CA anyway"
                    );
                    break;
                }
                tokio::time::sleep(SERVED_POLL).await;
            }
        }
        self.state.update(host, |s| s.state = OrderState::Validating);
        order.ready().await?;
        let issued = order.finish(FINISH_TIMEOUT).await?;
        let pem = issued.secret_pem();
        let name = acme::certificate_name(host, &pem);
        let labels = acme::certificate_labels(&acme.directory_url, host, issued.not_after);
        let sealed = seal(key, &pem);
        ignore_conflict(
            self.swarm
                .create_secret(&SecretDef { name: name.clone(), labels: labels.clone(), data: pem.clone() })
                .await,
        )?;
        ignore_conflict(
            self.swarm.create_config(&ConfigDef { name: acme::sealed_name(&name), labels, data: sealed }).await,
        )?;
        self.state.remember_certificate(&name, pem);
        info!(host, certificate = %name, not_after = %acme::rfc3339(issued.not_after), "stored the ACME certificate");
        Ok(name)
    }

    /// The account for `acme`'s directory: the one in use, else the stored one, else a new one
    /// (stored before it is used). A stored account the CA no longer knows is replaced.
    async fn account(&self, acme: &AcmeConfig, key: &str) -> Result<Arc<dyn CaAccount>, OrderError> {
        let mut cached = self.account.lock().await;
        if let Some((directory, account)) = cached.as_ref()
            && *directory == acme.directory_url
        {
            return Ok(account.clone());
        }
        let observed = self.swarm.observe().await?;
        let stored_config = acme::account_config(&observed, &acme.directory_url).cloned();
        let stored = match &stored_config {
            Some(config) => match unseal(key, &config.data) {
                Ok(bytes) => Some(AccountCredentials::from_stored(bytes)?),
                Err(e) => {
                    warn!(config = %config.name, "the stored ACME account cannot be unsealed ({e}): making a new one");
                    None
                }
            },
            None => None,
        };
        let had_stored = stored.is_some();
        let (account, created) = match self.ca.account(acme, stored).await {
            Err(e) if had_stored && e.account_unknown() => {
                warn!("the ACME server does not know the stored account: making a new one");
                self.ca.account(acme, None).await?
            }
            other => other?,
        };
        if let Some(credentials) = created {
            let name = acme::account_name(credentials.as_bytes());
            let labels = acme::account_labels(&acme.directory_url);
            ignore_conflict(
                self.swarm
                    .create_secret(&SecretDef {
                        name: name.clone(),
                        labels: labels.clone(),
                        data: credentials.as_bytes().to_vec(),
                    })
                    .await,
            )?;
            ignore_conflict(
                self.swarm
                    .create_config(&ConfigDef {
                        name: acme::sealed_name(&name),
                        labels,
                        data: seal(key, credentials.as_bytes()),
                    })
                    .await,
            )?;
            info!(account = %name, "stored the ACME account");
            // The replaced account's objects go (else the next writer would find it first).
            if let Some(old) = stored_config.filter(|c| c.name != acme::sealed_name(&name)) {
                let _ = self.swarm.delete_config(&old.id).await;
                if let Some(secret) = old.name.strip_suffix(reconcilers::ownership::ACME_SEALED_SUFFIX) {
                    let _ = self.swarm.delete_secret(secret).await;
                }
            }
        }
        *cached = Some((acme.directory_url.clone(), account.clone()));
        Ok(account)
    }
}

/// A create that met an object of the same name (named by content: the same content) is done.
fn ignore_conflict(result: Result<(), SwarmError>) -> Result<(), SwarmError> {
    match result {
        Err(SwarmError::Conflict { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
