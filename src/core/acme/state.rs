//! What the ACME orderer shares with the passes, `/status` and the metrics (one [`AcmeState`] in
//! `Context`): the HTTP-01 answers being published (read into `Environment::with_acme` by every
//! pass), the certificates' contents unsealed from their sealed configs (cached by name: configs
//! are immutable), which clusters' proxies serve which answer (recorded by the writer's passes),
//! and the state of each host's order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use reconcilers::acme;
use reconcilers::observed::Observed;
use reconcilers::ownership::{ACME_CERTIFICATE, ACME_SEALED_SUFFIX, LABEL_ACME, is_owned};
use reconcilers::plan::Plan;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::Http01Answer;
use super::seal::unseal;

/// Where a host's order is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderState {
    /// Nothing to order: the certificate is good for longer than `RenewBefore`.
    #[default]
    Idle,
    /// To be ordered: waiting for its next try, or for a free slot.
    Waiting,
    /// Talking to the CA: the account, the order.
    Ordering,
    /// The answer is published: waiting for the cluster's proxies to serve it.
    Answering,
    /// The CA validates, then issues.
    Validating,
    /// The last order issued a certificate.
    Issued,
    /// The last order failed: retried at `next_try`.
    Failed,
}

/// One host's certificate and order, as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStatus {
    /// The certificate served (its secret's name), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Its `notAfter`, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// Whole days until `not_after` (negative once it passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// What the last plan decided: `order`, `renew` or `keep`.
    pub decision: String,
    pub state: OrderState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next order may start after a failure, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_try: Option<u64>,
    /// Failed orders in a row (the backoff's count).
    pub failures: u32,
    /// When this replica last stored a certificate for the host, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
}

/// An answer being published, and the host it proves.
#[derive(Debug, Clone)]
struct Published {
    host: String,
    key_authorization: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// By token.
    answers: BTreeMap<String, Published>,
    /// Certificate secret name → its content (chain then key, PEM), read back from the sealed
    /// copy or remembered when stored.
    certificates: BTreeMap<String, Vec<u8>>,
    /// Sealed configs that could not be unsealed (another key): not tried again.
    unreadable: BTreeSet<String>,
    /// Token → the clusters whose proxies were seen serving a config carrying it.
    served: BTreeMap<String, BTreeSet<String>>,
    /// Host → the clusters serving it that want a certificate for it (the last writer's pass).
    clusters: BTreeMap<String, BTreeSet<String>>,
    hosts: BTreeMap<String, HostStatus>,
    /// Orders finished, by result (`issued`, `failed`).
    orders: BTreeMap<String, u64>,
}

/// Shared by the orderer, the reconciler, the status and the metrics. See the module.
#[derive(Debug, Default)]
pub struct AcmeState {
    inner: Mutex<Inner>,
    wake: Notify,
}

impl AcmeState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("acme state lock")
    }

    /// The answers to render: token → key authorization.
    pub fn answers(&self) -> BTreeMap<String, String> {
        self.lock().answers.iter().map(|(t, p)| (t.clone(), p.key_authorization.clone())).collect()
    }

    /// Publishes `answer` for `host` (the next pass renders it).
    pub fn publish(&self, host: &str, answer: &Http01Answer) {
        let mut inner = self.lock();
        inner.served.remove(&answer.token);
        inner.answers.insert(
            answer.token.clone(),
            Published { host: host.to_owned(), key_authorization: answer.key_authorization.clone() },
        );
    }

    /// Withdraws every answer published for `host`.
    pub fn withdraw(&self, host: &str) {
        let mut inner = self.lock();
        let tokens: Vec<String> =
            inner.answers.iter().filter(|(_, p)| p.host == host).map(|(t, _)| t.clone()).collect();
        for token in tokens {
            inner.answers.remove(&token);
            inner.served.remove(&token);
        }
    }

    /// Asks the loop for a pass soon.
    pub fn wake_pass(&self) {
        self.wake.notify_one();
    }

    /// Completes when [`wake_pass`](Self::wake_pass) was called (once per call, at most one
    /// stored).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Whether every cluster wanting a certificate for `host` was seen serving `token` (and at
    /// least one such cluster exists).
    pub fn serves(&self, token: &str, host: &str) -> bool {
        let inner = self.lock();
        let Some(clusters) = inner.clusters.get(host).filter(|c| !c.is_empty()) else { return false };
        inner.served.get(token).is_some_and(|served| clusters.is_subset(served))
    }

    /// The contents of the observed ACME certificates whose sealed copies `key` opens, by secret
    /// name; each sealed config is unsealed once (configs never change under a name). Entries of
    /// objects gone are forgotten.
    pub fn certificates(&self, observed: &Observed, key: &str) -> BTreeMap<String, Vec<u8>> {
        let mut inner = self.lock();
        let sealed: Vec<_> = observed
            .configs
            .iter()
            .filter(|c| is_owned(&c.labels) && c.labels.get(LABEL_ACME).is_some_and(|v| v == ACME_CERTIFICATE))
            .filter_map(|c| Some((c.name.strip_suffix(ACME_SEALED_SUFFIX)?.to_owned(), c)))
            .collect();
        let present: BTreeSet<&str> = sealed.iter().map(|(name, _)| name.as_str()).collect();
        inner.certificates.retain(|name, _| present.contains(name.as_str()) || observed.secrets.contains(name));
        for (name, config) in &sealed {
            if inner.certificates.contains_key(name) || inner.unreadable.contains(name) || key.is_empty() {
                continue;
            }
            match unseal(key, &config.data) {
                Ok(pem) => {
                    inner.certificates.insert(name.clone(), pem);
                }
                Err(e) => {
                    tracing::warn!(certificate = %name, "cannot unseal the certificate's copy ({e}): it is ordered again");
                    inner.unreadable.insert(name.clone());
                }
            }
        }
        inner.certificates.clone()
    }

    /// Remembers a certificate just stored (no need to unseal it back).
    pub fn remember_certificate(&self, name: &str, pem: Vec<u8>) {
        self.lock().certificates.insert(name.to_owned(), pem);
    }

    /// Records what a writer's pass saw: which clusters want which host, which clusters now
    /// serve (converged on a config rendered with `tokens`), and the certificates served.
    pub fn after_plan(
        &self,
        observed: &Observed,
        plan: &Plan,
        tokens: &BTreeSet<String>,
        converged: &BTreeSet<String>,
        now: SystemTime,
    ) {
        let certificates: BTreeMap<String, acme::Certificate> =
            acme::certificates(observed).into_iter().map(|c| (c.name.clone(), c)).collect();
        let mut inner = self.lock();
        inner.clusters.clear();
        let mut seen = BTreeSet::new();
        for (cluster, cluster_plan) in &plan.clusters {
            for host in &cluster_plan.acme.hosts {
                inner.clusters.entry(host.host.clone()).or_default().insert(cluster.clone());
                seen.insert(host.host.clone());
                let status = inner.hosts.entry(host.host.clone()).or_default();
                status.decision = host.decision.to_string();
                let served = host.serving.as_ref().and_then(|name| certificates.get(name));
                status.certificate = host.serving.clone();
                status.not_after = served.and_then(|c| u64::try_from(c.not_after.unix()).ok());
                status.days_left = status.not_after.map(|t| days_until(t, now));
            }
            if converged.contains(cluster) {
                for token in tokens {
                    inner.served.entry(token.clone()).or_default().insert(cluster.clone());
                }
            }
        }
        inner.hosts.retain(|host, _| seen.contains(host));
    }

    /// One host's status.
    pub fn host(&self, host: &str) -> HostStatus {
        self.lock().hosts.get(host).cloned().unwrap_or_default()
    }

    /// Every host's status.
    pub fn hosts(&self) -> BTreeMap<String, HostStatus> {
        self.lock().hosts.clone()
    }

    /// Changes one host's status (a host not planned by the last pass gets an entry all the
    /// same, dropped by the next pass).
    pub fn update(&self, host: &str, change: impl FnOnce(&mut HostStatus)) {
        change(self.lock().hosts.entry(host.to_owned()).or_default());
    }

    /// Counts an order finished with `result`.
    pub fn count_order(&self, result: &str) {
        *self.lock().orders.entry(result.to_owned()).or_default() += 1;
    }

    /// Orders finished so far, by result.
    pub fn orders(&self) -> BTreeMap<String, u64> {
        self.lock().orders.clone()
    }

    /// This replica stopped ordering (a standby, or no `[ACME]`): no answer is published, no
    /// order is in progress.
    pub fn stop_orders(&self) {
        let mut inner = self.lock();
        inner.answers.clear();
        inner.served.clear();
        for status in inner.hosts.values_mut() {
            if matches!(status.state, OrderState::Ordering | OrderState::Answering | OrderState::Validating) {
                status.state = OrderState::Waiting;
            }
        }
    }
}

/// Whole days from `now` until `unix` (negative once passed).
pub fn days_until(unix: u64, now: SystemTime) -> i64 {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    (unix as i64 - now as i64).div_euclid(86_400)
}

/// Unix seconds of `time`.
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
