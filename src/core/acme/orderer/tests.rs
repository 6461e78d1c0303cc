//! The orderer against the in-memory swarm and a fake CA (time paused): passes and orders run
//! together as the controller runs them, and the fake CA validates only an answer that is in a
//! proxy config of the swarm.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reconcilers::acme::{self, Decision};
use reconcilers::config::{self, AcmeConfig, Config};
use reconcilers::fixtures::{SEED, seed_swarm, task};
use reconcilers::labels::LABEL_SSL_ACME;
use reconcilers::ownership::{ACME_ACCOUNT, LABEL_ACME, LABEL_ACME_HOST, is_owned};

use super::*;
use crate::core::acme::seal::unseal;
use crate::core::context::Context;
use crate::core::proxycheck::ProxyChecker;
use crate::core::reconcile::Reconciler;
use crate::swarm::memory::MemorySwarm;

const KEY: &str = "SWMTKN-1-test-manager-key";
const EAST: &str = "demo-east.local";
const WEST: &str = "demo-west.local";

fn acme_config() -> Config {
    let text = format!("{SEED}\n[ACME]\n  DirectoryURL = \"https://ca.test/directory\"\n");
    config::parse("acme.toml", &text).expect("parses").config
}

/// The walk-through's two apps, both asking for certificates.
fn swarm() -> MemorySwarm {
    let mut observed = seed_swarm();
    for service in &mut observed.services {
        service.def.labels.insert(LABEL_SSL_ACME.to_owned(), "true".to_owned());
    }
    MemorySwarm::new(observed)
}

fn context(swarm: &MemorySwarm) -> Context<MemorySwarm> {
    let ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
    ctx.deliveries.set_key(KEY.to_owned());
    ctx
}

/// What the fake CA saw and is told to do.
#[derive(Default)]
struct Record {
    /// Accounts made.
    created: u32,
    /// The stored credentials each account call was given.
    stored: Vec<Option<Vec<u8>>>,
    /// Orders, by host.
    orders: BTreeMap<String, u32>,
    /// Hosts whose orders the CA refuses.
    failing: BTreeSet<String>,
    /// Validations of an answer no proxy config carried.
    unserved: u32,
}

#[derive(Clone)]
struct FakeCa {
    record: Arc<Mutex<Record>>,
    swarm: MemorySwarm,
}

impl FakeCa {
    fn new(swarm: &MemorySwarm) -> Self {
        Self { record: Arc::default(), swarm: swarm.clone() }
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }
}

struct FakeAccount(FakeCa);

struct FakeOrder {
    ca: FakeCa,
    host: String,
    answer: Http01Answer,
    told: bool,
    serial: u32,
}

impl Ca for FakeCa {
    fn account<'a>(
        &'a self,
        _acme: &'a AcmeConfig,
        stored: Option<AccountCredentials>,
    ) -> BoxFuture<'a, Result<AccountAnswer, AcmeError>> {
        Box::pin(async move {
            let mut record = self.record();
            record.stored.push(stored.as_ref().map(|s| s.as_bytes().to_vec()));
            let created = stored.is_none().then(|| {
                record.created += 1;
                AccountCredentials::from_stored(format!("{{\"account\":{}}}", record.created).into_bytes()).unwrap()
            });
            Ok((Arc::new(FakeAccount(self.clone())) as Arc<dyn CaAccount>, created))
        })
    }
}

impl CaAccount for FakeAccount {
    fn order<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Box<dyn CaOrder>, AcmeError>> {
        Box::pin(async move {
            let mut record = self.0.record();
            let serial = {
                let n = record.orders.entry(host.to_owned()).or_default();
                *n += 1;
                *n
            };
            if record.failing.contains(host) {
                return Err(AcmeError::Refused {
                    kind: None,
                    detail: format!("no order for {host}"),
                    retry_after: None,
                });
            }
            let token = format!("{}-{serial}", host.replace('.', "-"));
            let answer = Http01Answer { key_authorization: format!("{token}.{}", "t".repeat(43)), token };
            Ok(Box::new(FakeOrder { ca: self.0.clone(), host: host.to_owned(), answer, told: false, serial })
                as Box<dyn CaOrder>)
        })
    }
}

impl CaOrder for FakeOrder {
    fn answer(&self) -> Option<Http01Answer> {
        Some(self.answer.clone())
    }

    fn ready(&mut self) -> BoxFuture<'_, Result<(), AcmeError>> {
        self.told = true;
        Box::pin(async { Ok(()) })
    }

    fn finish(self: Box<Self>, _timeout: Duration) -> BoxFuture<'static, Result<Issued, AcmeError>> {
        Box::pin(async move {
            assert!(self.told, "finish before ready");
            // The CA's validation: some proxy config of the swarm answers the token.
            let served = self.ca.swarm.observed().configs.iter().any(|c| {
                is_owned(&c.labels)
                    && !c.labels.contains_key(LABEL_ACME)
                    && String::from_utf8_lossy(&c.data).contains(&self.answer.key_authorization)
            });
            if !served {
                self.ca.record().unserved += 1;
                return Err(AcmeError::ChallengeFailed { host: self.host, detail: "not served".to_owned() });
            }
            Ok(Issued {
                chain_pem: format!(
                    "-----BEGIN CERTIFICATE-----\n{} {}\n-----END CERTIFICATE-----\n",
                    self.host, self.serial
                ),
                key_pem: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".to_owned(),
                not_after: SystemTime::now() + Duration::from_secs(90 * 86_400),
                host: self.host,
            })
        })
    }
}

/// The proxy services get a running task each (the in-memory swarm starts none).
fn run_proxy_tasks(swarm: &MemorySwarm) {
    swarm.edit(|o| {
        let proxies: Vec<String> = o
            .services
            .iter()
            .filter(|s| is_owned(&s.def.labels) && s.def.name.starts_with("interlock-proxy-"))
            .map(|s| s.id.clone())
            .collect();
        for id in proxies {
            if !o.tasks.iter().any(|t| t.service_id == id) {
                o.tasks.push(task(&format!("task-{id}"), &id, "n-op", "10.0.0.9"));
            }
        }
    });
}

/// Runs passes and the orderer after each, as the controller does, until `done` or 60 rounds.
async fn drive(
    r: &mut Reconciler<MemorySwarm>,
    orderer: &mut Orderer<MemorySwarm>,
    swarm: &MemorySwarm,
    writer: bool,
    done: impl Fn() -> bool,
) -> bool {
    for _ in 0..60 {
        let report = r.pass().await.expect("pass");
        r.settle().await;
        run_proxy_tasks(swarm);
        orderer.after_pass(writer, r.config(), &report.plan, KEY);
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

fn certificates(swarm: &MemorySwarm) -> Vec<acme::Certificate> {
    acme::certificates(&swarm.observed())
}

fn has_certificate(swarm: &MemorySwarm, host: &str) -> bool {
    certificates(swarm).iter().any(|c| c.host == host && c.sealed.is_some())
}

#[tokio::test(start_paused = true)]
async fn one_order_end_to_end() {
    let swarm = swarm();
    let ctx = context(&swarm);
    let ca = FakeCa::new(&swarm);
    let mut r = Reconciler::new(ctx.clone(), acme_config());
    let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
    let done = || has_certificate(&swarm, EAST) && has_certificate(&swarm, WEST);
    let started = tokio::time::Instant::now();
    assert!(drive(&mut r, &mut orderer, &swarm, true, done).await, "{:#?}", ctx.acme.hosts());
    // The orders went on once the proxies were seen serving the answers, not after ANSWER_WAIT.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // Stored twice: the secret (mounted by rolling proxies) and its sealed copy, labelled.
    let observed = swarm.observed();
    let east = certificates(&swarm).into_iter().find(|c| c.host == EAST).unwrap();
    let sealed = observed.configs.iter().find(|c| Some(&c.name) == east.sealed.as_ref()).unwrap();
    let pem = unseal(KEY, &sealed.data).expect("sealed with the manager key");
    assert_eq!(east.name, acme::certificate_name(EAST, &pem));
    assert!(String::from_utf8_lossy(&pem).contains("BEGIN PRIVATE KEY"));
    assert_eq!(observed.secret_labels[&east.name][LABEL_ACME_HOST], EAST);
    assert_eq!(east.directory, acme::directory_id("https://ca.test/directory"));
    // One account, stored the same way.
    assert_eq!(ca.record().created, 1);
    assert_eq!(ca.record().unserved, 0, "the CA validated only answers the proxies served");
    let accounts: Vec<_> =
        observed.configs.iter().filter(|c| c.labels.get(LABEL_ACME).is_some_and(|v| v == ACME_ACCOUNT)).collect();
    assert_eq!(accounts.len(), 1);
    assert_eq!(unseal(KEY, &accounts[0].data).unwrap(), b"{\"account\":1}");

    // The next passes serve the certificates and order nothing; the answers are withdrawn.
    let report = r.pass().await.unwrap();
    orderer.after_pass(true, r.config(), &report.plan, KEY);
    assert!(report.plan.acme_orders().is_empty(), "{:?}", report.plan.acme_orders());
    let east_cluster = &report.plan.clusters["us-east"].acme.hosts[0];
    assert_eq!((east_cluster.decision, east_cluster.serving.as_deref()), (Decision::Keep, Some(east.name.as_str())));
    assert!(ctx.acme.answers().is_empty());
    assert_eq!(ca.record().orders.values().sum::<u32>(), 2, "one order per host");
    let status = ctx.acme.host(EAST);
    assert_eq!(status.state, OrderState::Issued);
    assert!((89..=90).contains(&status.days_left.unwrap()), "{status:?}");
    assert_eq!(ctx.acme.orders()["issued"], 2);
    ctx.metrics.record_acme_orders(&ctx.acme.orders());
    ctx.metrics.record_acme_expiry(&BTreeMap::from([(EAST.to_owned(), status.not_after.unwrap())]));
    let text = ctx.metrics.encode();
    assert!(text.contains("interlock_acme_orders_total{result=\"issued\"} 2"), "{text}");
    assert!(text.contains("interlock_acme_certificate_expiry_timestamp_seconds{host=\"demo-east.local\"}"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_host_is_retried_with_backoff_while_another_is_served() {
    let swarm = swarm();
    let ctx = context(&swarm);
    let ca = FakeCa::new(&swarm);
    ca.record().failing.insert(EAST.to_owned());
    let mut r = Reconciler::new(ctx.clone(), acme_config());
    let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
    assert!(drive(&mut r, &mut orderer, &swarm, true, || has_certificate(&swarm, WEST)).await);
    // Many passes later (paused time: the wall clock has not moved), one order only for east.
    for _ in 0..10 {
        let report = r.pass().await.unwrap();
        orderer.after_pass(true, r.config(), &report.plan, KEY);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(ca.record().orders[EAST], 1, "backing off");
    let status = ctx.acme.host(EAST);
    assert_eq!((status.state, status.failures), (OrderState::Failed, 1));
    assert!(status.last_error.as_deref().unwrap().contains("no order for"), "{status:?}");
    let wait = status.next_try.unwrap() - unix(SystemTime::now());
    assert!((55..=60).contains(&wait), "1 min after the first failure: {wait}");
    assert!(!has_certificate(&swarm, EAST), "east is served as plain HTTP meanwhile");

    // Its time comes (set back by hand: the orderer reads the wall clock): tried again, failing
    // again, it waits twice as long.
    ctx.acme.update(EAST, |s| s.next_try = Some(0));
    let report = r.pass().await.unwrap();
    orderer.after_pass(true, r.config(), &report.plan, KEY);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ca.record().orders[EAST], 2);
    let status = ctx.acme.host(EAST);
    assert_eq!(status.failures, 2);
    let wait = status.next_try.unwrap() - unix(SystemTime::now());
    assert!((115..=120).contains(&wait), "2 min after the second: {wait}");

    // The CA accepts it again: the next try issues.
    ca.record().failing.clear();
    ctx.acme.update(EAST, |s| s.next_try = Some(0));
    assert!(drive(&mut r, &mut orderer, &swarm, true, || has_certificate(&swarm, EAST)).await);
    assert_eq!(ca.record().orders[WEST], 1, "west was not ordered again");
    assert_eq!(ctx.acme.orders()["failed"], 2);
}

#[tokio::test(start_paused = true)]
async fn a_standby_orders_nothing_and_a_writer_turned_standby_drops_its_orders() {
    let swarm = swarm();
    let ctx = context(&swarm);
    let ca = FakeCa::new(&swarm);
    let mut r = Reconciler::new(ctx.clone(), acme_config());
    let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
    assert!(!drive(&mut r, &mut orderer, &swarm, false, || false).await);
    assert_eq!(ca.record().stored.len(), 0, "no account asked for");
    assert!(ca.record().orders.is_empty());
    assert!(certificates(&swarm).is_empty());

    // A writer whose answers are published but not yet served (no proxy task runs) ...
    let report = r.pass().await.unwrap();
    orderer.after_pass(true, r.config(), &report.plan, KEY);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ctx.acme.answers().len(), 2, "{:#?}", ctx.acme.hosts());
    assert_eq!(orderer.ordering().len(), 2);
    // ... stops writing: its orders and answers go.
    orderer.after_pass(false, r.config(), &report.plan, KEY);
    assert!(ctx.acme.answers().is_empty());
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(orderer.ordering().is_empty());
    assert!(certificates(&swarm).is_empty(), "nothing issued by a replica that stopped writing");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_core_continues_the_account() {
    let swarm = swarm();
    let ca = FakeCa::new(&swarm);
    {
        let ctx = context(&swarm);
        let mut r = Reconciler::new(ctx.clone(), acme_config());
        let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
        assert!(drive(&mut r, &mut orderer, &swarm, true, || has_certificate(&swarm, WEST)).await);
    }
    // A new host, and a new core (nothing in memory) on the same swarm.
    swarm.edit(|o| {
        let east = o.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
        east.def.labels.insert(reconcilers::labels::LABEL_HOSTS.to_owned(), "new.example.test".to_owned());
    });
    let ctx = context(&swarm);
    let mut r = Reconciler::new(ctx.clone(), acme_config());
    let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
    assert!(drive(&mut r, &mut orderer, &swarm, true, || has_certificate(&swarm, "new.example.test")).await);
    let record = ca.record();
    assert_eq!(record.created, 1, "the stored account was used: {:?}", record.stored);
    assert_eq!(record.stored.last().unwrap().as_deref(), Some(&b"{\"account\":1}"[..]));
    // The first core's certificate was read back from its sealed copy by the second.
    assert!(ctx.acme.certificates(&swarm.observed(), KEY).keys().any(|n| n.contains(WEST)));
}

/// [`acme_config`] with us-east's proxies updated in place (`HitlessServiceUpdate`).
fn hitless_acme_config() -> Config {
    let mut text = String::new();
    for line in SEED.lines() {
        text.push_str(line);
        text.push('\n');
        if line.trim() == "ServiceCluster = \"us-east\"" {
            text.push_str("    HitlessServiceUpdate = true\n");
        }
    }
    text.push_str("\n[ACME]\n  DirectoryURL = \"https://ca.test/directory\"\n");
    config::parse("acme.toml", &text).expect("parses").config
}

/// What us-east's extension does: every running proxy task reports the served config.
fn extension_applies(ctx: &Context<MemorySwarm>, swarm: &MemorySwarm) {
    let Some(delivery) = ctx.deliveries.current("us-east") else { return };
    let observed = swarm.observed();
    let Some(proxy) = observed.services.iter().find(|s| s.def.name == "interlock-proxy-us-east") else { return };
    for task in observed.tasks.iter().filter(|t| t.service_id == proxy.id && t.running) {
        let report = crate::extension_api::TaskReport {
            task: task.id.clone(),
            node: task.node_id.clone(),
            container: format!("c-{}", task.id),
            hash: delivery.hash.clone(),
            generation: delivery.generation,
            rejected: None,
            error: None,
            applied_at: 0,
            took_ms: 1,
        };
        let _ = ctx.deliveries.accept_report("us-east", report);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hitless_cluster_is_validated_once_every_task_reported_the_answer() {
    let swarm = swarm();
    let ctx = context(&swarm);
    let ca = FakeCa::new(&swarm);
    let mut r = Reconciler::new(ctx.clone(), hitless_acme_config());
    let mut orderer = Orderer::new(swarm.clone(), Arc::new(ca.clone()), ctx.acme.clone());
    // No task has applied the delivery carrying the answer: the order waits for it.
    assert!(!drive(&mut r, &mut orderer, &swarm, true, || has_certificate(&swarm, EAST)).await);
    assert_eq!(ctx.acme.host(EAST).state, OrderState::Answering, "{:?}", ctx.acme.host(EAST));
    assert!(has_certificate(&swarm, WEST), "the rolling cluster's host was served meanwhile");
    let served = ctx.deliveries.current("us-east").expect("a delivery");
    assert!(
        served.files.iter().any(|f| f.content.contains(&ctx.acme.answers().into_values().next().unwrap())),
        "the delivery carries the answer"
    );

    // The extension applies it on every task: validated, issued, delivered as a file.
    let done = || has_certificate(&swarm, EAST);
    let mut issued = false;
    for _ in 0..40 {
        let report = r.pass().await.unwrap();
        r.settle().await;
        run_proxy_tasks(&swarm);
        extension_applies(&ctx, &swarm);
        orderer.after_pass(true, r.config(), &report.plan, KEY);
        if done() {
            issued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(issued, "{:?}", ctx.acme.host(EAST));
    assert_eq!(ca.record().unserved, 0);
    let name = certificates(&swarm).into_iter().find(|c| c.host == EAST).unwrap().name;
    r.pass().await.unwrap();
    let delivery = ctx.deliveries.current("us-east").unwrap();
    let file = delivery.files.iter().find(|f| f.path.ends_with(&format!("/acme/{name}.pem"))).expect("delivered");
    assert!(file.content.contains("BEGIN PRIVATE KEY"), "chain then key");
}
