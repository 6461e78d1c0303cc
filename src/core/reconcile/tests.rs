//! The reconciler's concurrency and error rules (passes, culprits, writes, roles), against the
//! in-memory swarm with injected faults (time is paused: a 30 s write costs nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use reconcilers::config::{Config, ProxyKind};
use reconcilers::plan::{self, Plan};
use tokio::time::Instant;

use super::Reconciler;
use super::pass::{PASS_WAIT, STRANDED_AFTER};
use crate::core::context::{Context, Replica};
use crate::core::delivery::Serving;
use crate::core::proxycheck::{ProxyChecker, Verdict};
use crate::swarm::Swarm;
use crate::swarm::memory::{MemorySwarm, scale_demo_east};
use reconcilers::fixtures::{seed_config, seed_swarm};

fn reconciler(swarm: &MemorySwarm, config: Config) -> Reconciler<MemorySwarm> {
    Reconciler::new(Context::new(swarm.clone(), ProxyChecker::unchecked()), config)
}

/// Passes (waiting for every writer) until one plans nothing.
async fn converge(r: &mut Reconciler<MemorySwarm>) {
    for _ in 0..6 {
        let report = r.pass().await.expect("pass");
        let settled = r.settle().await;
        assert!(report.failures.is_empty() && settled.failures.is_empty(), "{report:#?} {settled:#?}");
        if report.plan.is_empty() {
            return;
        }
    }
    panic!("no convergence");
}

fn with_us_east(config: &Config, edit: impl FnOnce(&mut reconcilers::config::Extension)) -> Config {
    let mut config = config.clone();
    edit(config.extensions.get_mut("us-east").expect("us-east"));
    config
}

#[tokio::test(start_paused = true)]
async fn a_slow_cluster_does_not_hold_up_the_others() {
    let swarm = MemorySwarm::new(seed_swarm());
    swarm.slow("us-east", Duration::from_secs(30));
    let mut r = reconciler(&swarm, seed_config());
    let started = Instant::now();
    let report = r.pass().await.unwrap();
    assert!(started.elapsed() <= PASS_WAIT + Duration::from_millis(100), "the pass waited {:?}", started.elapsed());
    assert_eq!(report.writes, 3, "us-west's config, proxy and extension: {report:#?}");
    assert!(swarm.service("interlock-proxy-us-west").is_some(), "us-west converged meanwhile");
    assert!(swarm.service("interlock-proxy-us-east").is_none(), "us-east is still writing");
    assert_eq!(r.busy(), ["us-east"]);

    // us-west moves on (a route change) while us-east still writes; us-east gets no second writer.
    swarm.edit(|o| o.tasks.retain(|t| t.service_id != "s-west"));
    let report = r.pass().await.unwrap();
    assert_eq!(report.busy, ["us-east"]);
    assert!(report.plan.clusters["us-west"].actions.iter().any(|a| a.to_string().contains("update service")));
    assert_eq!(swarm.most_writers_at_once("us-east"), 1);
    assert_eq!(swarm.most_writers_at_once("us-west"), 1);

    r.settle().await;
    converge(&mut r).await;
    assert!(swarm.service("interlock-proxy-us-east").is_some());
    assert_eq!(swarm.most_writers_at_once("us-east"), 1, "never two writers for one cluster");
}

#[tokio::test(start_paused = true)]
async fn a_failing_cluster_backs_off_with_jitter_while_the_others_converge() {
    let swarm = MemorySwarm::new(seed_swarm());
    swarm.failing("us-east", u32::MAX);
    let mut r = reconciler(&swarm, seed_config());
    let report = r.pass().await.unwrap();
    assert!(report.failures["us-east"].contains("injected failure"), "{report:#?}");
    assert!(swarm.service("interlock-proxy-us-west").is_some(), "us-west converged");
    let wait = r.next_retry().expect("us-east backs off") - Instant::now();
    assert!((Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&wait), "{wait:?}");

    // Before the retry time: us-east is skipped, nothing is attempted.
    let attempts = swarm.attempts().len();
    let report = r.pass().await.unwrap();
    assert_eq!(report.backing_off, ["us-east"]);
    assert_eq!(swarm.attempts().len(), attempts, "no write while backing off");

    // After it: one more attempt, and a longer wait (2 s · jitter).
    tokio::time::advance(Duration::from_millis(1300)).await;
    let report = r.pass().await.unwrap();
    assert!(report.failures.contains_key("us-east"));
    assert_eq!(swarm.attempts().len(), attempts + 1, "one attempt, stopped at its first failure");
    let wait = r.next_retry().unwrap() - Instant::now();
    assert!((Duration::from_millis(1600)..=Duration::from_millis(2400)).contains(&wait), "{wait:?}");

    // Fixed: the next attempt converges and the backoff is gone.
    swarm.heal();
    tokio::time::advance(Duration::from_millis(2500)).await;
    converge(&mut r).await;
    assert!(swarm.service("interlock-proxy-us-east").is_some());
    assert_eq!(r.next_retry(), None);
}

#[tokio::test(start_paused = true)]
async fn an_update_out_of_sequence_is_planned_again_from_a_fresh_read_not_rewritten() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, seed_config());
    converge(&mut r).await;
    let before = swarm.service("interlock-proxy-us-east").unwrap();
    swarm.out_of_sequence_once("interlock-proxy-us-east");
    swarm.edit(|o| scale_demo_east(o, "10.0.1.6"));
    let report = r.pass().await.unwrap();
    let settled = r.settle().await;
    assert!(report.failures.is_empty() && settled.failures.is_empty(), "a conflict is no failure: {settled:#?}");
    assert_eq!([report.conflicts, settled.conflicts].concat(), ["us-east"]);
    let updates = || swarm.attempts().iter().filter(|a| *a == "update service interlock-proxy-us-east").count();
    assert_eq!(updates(), 1, "the refused update is not sent again with the spec of the old read");
    let retry = r.next_retry().expect("planned again soon");
    assert!(retry - Instant::now() <= Duration::from_millis(300), "soon, not after a failure's backoff");
    tokio::time::sleep_until(retry).await;
    r.pass().await.unwrap();
    r.settle().await;
    assert_eq!(updates(), 2, "planned afresh, written once");
    let after = swarm.service("interlock-proxy-us-east").unwrap();
    assert_ne!(after.def.configs, before.def.configs, "the new config is rolled out");
    assert_eq!(after.version, before.version + 2, "someone else's write, then ours");
}

/// Two replicas that both believe they write (their reads a moment apart) with different
/// configs: the one whose write was planned from the older read loses Swarm's version check
/// and does not overwrite the newer spec.
#[tokio::test(start_paused = true)]
async fn a_stale_replica_never_overwrites_a_newer_spec() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut first = reconciler(&swarm, seed_config());
    converge(&mut first).await;
    let moved = with_us_east(&seed_config(), |e| e.proxy_image = "nginx:newer".into());
    let mut stale = reconciler(&swarm, seed_config());
    let mut fresh = reconciler(&swarm, moved);
    // Both read the same swarm; each write takes 10 s; the fresh one's lands first.
    swarm.slow("interlock-proxy-us-east", Duration::from_secs(10));
    swarm.edit(|o| scale_demo_east(o, "10.0.1.6"));
    let fresh_pass = fresh.pass();
    let stale_pass = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stale.pass().await
    };
    let (a, b) = tokio::join!(fresh_pass, stale_pass);
    let (a, b) = (a.unwrap(), b.unwrap());
    let (a2, b2) = (fresh.settle().await, stale.settle().await);
    assert!(a.conflicts.is_empty() && a2.conflicts.is_empty() && a.failures.is_empty(), "{a:#?}");
    assert!(b.failures.is_empty() && b2.failures.is_empty(), "{b:#?} {b2:#?}");
    assert_eq!([b.conflicts, b2.conflicts].concat(), ["us-east"]);
    let east = swarm.service("interlock-proxy-us-east").unwrap();
    assert_eq!(east.def.image, "nginx:newer", "the newer spec stands");
    let updates = swarm.attempts().iter().filter(|a| *a == "update service interlock-proxy-us-east").count();
    assert_eq!(updates, 1, "the stale one stopped at its first refused write and wrote no spec from its old read");
}

#[tokio::test(start_paused = true)]
async fn a_reload_while_a_cluster_writes_starts_no_second_writer() {
    let swarm = MemorySwarm::new(seed_swarm());
    swarm.slow("us-east", Duration::from_secs(30));
    let mut r = reconciler(&swarm, seed_config());
    r.pass().await.unwrap();
    assert_eq!(r.busy(), ["us-east"]);

    // A config edit that changes us-east, while its first writer still runs.
    let edited = with_us_east(r.config(), |ext| {
        ext.proxy_update_delay = Some(Duration::from_secs(3));
        ext.declared.insert("ProxyUpdateDelay");
    });
    r.reconfigure(edited);
    let report = r.pass().await.unwrap();
    assert_eq!(report.busy, ["us-east"], "the writer survived the reload");
    assert_eq!(swarm.most_writers_at_once("us-east"), 1);

    r.settle().await;
    converge(&mut r).await;
    assert_eq!(swarm.most_writers_at_once("us-east"), 1);
    let proxy = swarm.service("interlock-proxy-us-east").unwrap();
    assert_eq!(proxy.def.update.delay, Some(Duration::from_secs(3)), "the reloaded config won");
}

#[tokio::test(start_paused = true)]
async fn backoff_survives_a_reload() {
    let swarm = MemorySwarm::new(seed_swarm());
    swarm.failing("us-east", u32::MAX);
    let mut r = reconciler(&swarm, seed_config());
    r.pass().await.unwrap();
    let retry = r.next_retry().expect("backing off");
    let edited = with_us_east(r.config(), |ext| ext.proxy_update_delay = Some(Duration::from_secs(3)));
    r.reconfigure(edited);
    assert_eq!(r.next_retry(), Some(retry), "a reload is no way around the backoff");
    let report = r.pass().await.unwrap();
    assert_eq!(report.backing_off, ["us-east"]);
}

#[tokio::test(start_paused = true)]
async fn a_removed_extension_is_collected() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, seed_config());
    converge(&mut r).await;
    let mut east_only = r.config().clone();
    east_only.extensions.remove("us-west");
    r.reconfigure(east_only);
    converge(&mut r).await;
    let left = swarm.observed();
    assert!(left.services.iter().all(|s| !s.def.name.contains("us-west") || s.def.name == "demo-west"));
    assert!(left.configs.iter().all(|c| !c.name.contains("us-west")));
    assert!(left.services.iter().any(|s| s.def.name == "interlock-proxy-us-east"));
    assert!(left.services.iter().any(|s| s.def.name == "demo-west"), "apps stay");
}

#[tokio::test(start_paused = true)]
async fn a_converged_swarm_gets_no_write() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, seed_config());
    converge(&mut r).await;
    let (_, writes) = swarm.requests();
    for _ in 0..3 {
        assert_eq!(r.pass().await.unwrap().writes, 0);
    }
    assert_eq!(swarm.requests().1, writes);
}

/// A service in us-east on demo-east's network, created after the walk-through's apps.
fn tenant(swarm: &MemorySwarm, name: &str, host: &str, created: &str) {
    use reconcilers::labels::{LABEL_HOSTS, LABEL_PORT, LABEL_SERVICE_CLUSTER};
    let mut service = swarm.service("demo-east").expect("demo-east");
    service.id = format!("s-{name}");
    service.def.name = name.to_owned();
    service.def.labels = BTreeMap::from([
        (LABEL_HOSTS.to_owned(), host.to_owned()),
        (LABEL_PORT.to_owned(), "8080".to_owned()),
        (LABEL_SERVICE_CLUSTER.to_owned(), "us-east".to_owned()),
    ]);
    service.created_at = created.to_owned();
    swarm.edit(|o| o.services.push(service));
}

fn reason<'a>(plan: &'a Plan, extension: &str, service: &str) -> Option<&'a str> {
    plan.clusters[extension].quarantined.iter().find(|q| q.service == service).map(|q| q.reason.as_str())
}

/// "nginx" rejects any config routing bad.local, and any routing both a.local and b.local.
fn picky(_: ProxyKind, text: &str) -> Verdict {
    if text.contains("bad.local") {
        Verdict::Rejected("[emerg] bad.local is not welcome".into())
    } else if text.contains("server_name a.local") && text.contains("server_name b.local") {
        Verdict::Rejected("[emerg] a.local and b.local clash".into())
    } else {
        Verdict::Accepted
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejected_config_quarantines_its_culprit_and_the_cluster_converges() {
    let swarm = MemorySwarm::new(seed_swarm());
    for (name, host, created) in [
        ("app-a", "a.local", "2026-01-05T00:00:00Z"),
        ("bad", "bad.local", "2026-01-03T00:00:00Z"),
        ("app-c", "c.local", "2026-01-04T00:00:00Z"),
    ] {
        tenant(&swarm, name, host, created);
    }
    let ctx = Context::new(swarm.clone(), ProxyChecker::judging(picky));
    let mut r = Reconciler::new(ctx, seed_config());
    let report = r.pass().await.unwrap();
    r.settle().await;
    let why = reason(&report.plan, "us-east", "bad").expect("the culprit is quarantined");
    assert!(why.contains("bad.local is not welcome"), "{why}");
    assert!(report.plan.clusters["us-east"].conflicts.is_empty(), "the cluster is not held");
    assert_eq!(reason(&report.plan, "us-east", "app-a"), None);
    let config = swarm.observed().configs.into_iter().find(|c| c.name.starts_with("interlock-proxy-us-east-"));
    let text = String::from_utf8(config.expect("us-east's config was written").data).unwrap();
    assert!(text.contains("a.local") && text.contains("c.local") && text.contains("demo-east.local"));
    assert!(!text.contains("bad.local"));

    // The next pass remembers it (no new search) and writes nothing.
    let report = r.pass().await.unwrap();
    assert!(reason(&report.plan, "us-east", "bad").is_some());
    assert!(report.plan.is_empty(), "{:#?}", report.plan);
}

#[tokio::test(start_paused = true)]
async fn of_two_services_that_clash_only_together_the_newer_goes() {
    let swarm = MemorySwarm::new(seed_swarm());
    tenant(&swarm, "older", "a.local", "2026-01-02T00:00:00Z");
    tenant(&swarm, "newer", "b.local", "2026-01-03T00:00:00Z");
    let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(picky)), seed_config());
    let (_, plan) = r.plan().await.unwrap();
    assert!(reason(&plan, "us-east", "newer").is_some_and(|w| w.contains("clash")), "{plan:#?}");
    assert_eq!(reason(&plan, "us-east", "older"), None);
    converge(&mut r).await;
}

#[tokio::test(start_paused = true)]
async fn a_rejection_no_service_explains_holds_the_cluster() {
    /// us-east's config is rejected whatever its routes (its TOML options are at fault);
    /// us-west's is fine.
    fn toml_fault(_: ProxyKind, text: &str) -> Verdict {
        if text.contains("demo-west") {
            Verdict::Accepted
        } else {
            Verdict::Rejected("[emerg] unknown directive in the TOML's options".into())
        }
    }
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(toml_fault)), seed_config());
    let report = r.pass().await.unwrap();
    r.settle().await;
    let east = &report.plan.clusters["us-east"];
    assert!(east.actions.is_empty() && east.conflicts[0].contains("no service's labels explain it"), "{east:#?}");
    assert!(east.quarantined.is_empty(), "no innocent service is blamed");
    assert!(swarm.service("interlock-proxy-us-west").is_some(), "the other cluster converges");
    assert!(swarm.service("interlock-proxy-us-east").is_none());
}

/// A new bad service in a cluster whose config was accepted is found by checking it alone: a
/// few small checks, not a bisection over the cluster's configs.
#[tokio::test(start_paused = true)]
async fn a_new_culprit_in_an_accepted_cluster_is_found_by_checking_it_alone() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Every check, and how many tenants' hosts the largest search check held.
    static CHECKS: AtomicUsize = AtomicUsize::new(0);
    static SEARCHED_HOSTS: AtomicUsize = AtomicUsize::new(0);
    fn counting(kind: ProxyKind, text: &str) -> Verdict {
        let verdict = picky(kind, text);
        CHECKS.fetch_add(1, Ordering::SeqCst);
        let hosts = (0..40).filter(|i| text.contains(&format!("t{i}.local"))).count();
        if hosts < 40 {
            SEARCHED_HOSTS.fetch_max(hosts, Ordering::SeqCst);
        }
        verdict
    }
    let swarm = MemorySwarm::new(seed_swarm());
    for i in 0..40 {
        tenant(&swarm, &format!("t{i}"), &format!("t{i}.local"), &format!("2026-01-02T00:00:{i:02}Z"));
    }
    let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(counting)), seed_config());
    converge(&mut r).await;
    tenant(&swarm, "bad", "bad.local", "2026-01-03T00:00:00Z");
    CHECKS.store(0, Ordering::SeqCst);
    SEARCHED_HOSTS.store(0, Ordering::SeqCst);
    let (_, plan) = r.plan().await.unwrap();
    assert!(reason(&plan, "us-east", "bad").is_some_and(|w| w.contains("not welcome")), "{plan:#?}");
    // us-east: the whole config (rejected), no service, "bad" alone, the whole config without
    // it; us-west: one check. A bisection over 41 services needs about 8 for us-east.
    let checks = CHECKS.load(Ordering::SeqCst);
    assert!(checks <= 6, "{checks} checks");
    assert_eq!(SEARCHED_HOSTS.load(Ordering::SeqCst), 0, "no search check held another tenant");
}

/// Each delivery says which build accepted it, so a task of the same build may skip its check;
/// a checker that knows no build says nothing.
#[tokio::test(start_paused = true)]
async fn a_delivery_names_the_build_that_accepted_it() {
    fn accept(_: ProxyKind, _: &str) -> Verdict {
        Verdict::Accepted
    }
    let swarm = MemorySwarm::new(seed_swarm());
    let checker = ProxyChecker::judging_as(accept, "build-1");
    let r = Reconciler::new(Context::new(swarm.clone(), checker), hitless(&seed_config()));
    let (_, plan) = r.plan().await.unwrap();
    assert_eq!(plan.clusters["us-east"].delivery.as_ref().unwrap().checked_with, "build-1");
    let r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(accept)), hitless(&seed_config()));
    let (_, plan) = r.plan().await.unwrap();
    assert_eq!(plan.clusters["us-east"].delivery.as_ref().unwrap().checked_with, "");
}

/// The report of the proxy task `t-proxy` on lb-00 that runs `running` (hash, generation) and
/// whose binary rejected the config `rejected` with `error`.
fn proxy_task_rejects(running: (&str, u64), rejected: &str, error: &str) -> crate::extension_api::TaskReport {
    crate::extension_api::TaskReport {
        task: "t-proxy".into(),
        node: "lb-00".into(),
        container: "c".into(),
        hash: running.0.to_owned(),
        generation: running.1,
        rejected: Some(rejected.to_owned()),
        error: Some(error.to_owned()),
        applied_at: 1,
        took_ms: 1,
    }
}

fn hitless(config: &Config) -> Config {
    let mut config = config.clone();
    for ext in config.extensions.values_mut() {
        ext.hitless_service_update = true;
    }
    config
}

#[tokio::test(start_paused = true)]
async fn a_hitless_route_change_is_served_before_it_is_recorded_and_writes_once() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, hitless(&seed_config()));
    converge(&mut r).await;
    let served = r.ctx.deliveries.current("us-east").expect("served from the first pass");
    swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
    let report = r.pass().await.unwrap();
    r.settle().await;
    let east = &report.plan.clusters["us-east"];
    assert!(matches!(east.proxy_change, Some(plan::ProxyChange::InPlace { .. })), "{east:#?}");
    let now = r.ctx.deliveries.current("us-east").unwrap();
    assert_ne!(now.hash, served.hash);
    assert_eq!(report.writes, 1, "one label-only update, no config object: {report:#?}");
    assert!(r.pass().await.unwrap().plan.is_empty(), "and then nothing");
    assert_eq!(r.ctx.deliveries.current("us-west").unwrap().extension, "us-west");
}

#[tokio::test(start_paused = true)]
async fn a_config_a_proxy_task_rejects_is_not_served_and_holds_its_cluster() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, hitless(&seed_config()));
    converge(&mut r).await;
    let served = r.ctx.deliveries.current("us-east").unwrap();
    swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
    // What the next config will be, and a task whose own binary rejects it.
    let (_, plan) = r.plan().await.unwrap();
    let next = plan.clusters["us-east"].delivery.clone().unwrap().hash;
    let rejecting = proxy_task_rejects((&served.hash, served.generation), &next, "[emerg] unknown directive");
    // The extension retries once before reporting again: two reports hold the cluster.
    r.ctx.deliveries.set_tasks("us-east", [("t-proxy".to_owned(), "lb-00".to_owned())].into());
    r.ctx.deliveries.accept_report("us-east", rejecting.clone()).unwrap();
    r.ctx.deliveries.accept_report("us-east", rejecting).unwrap();
    let report = r.pass().await.unwrap();
    let east = &report.plan.clusters["us-east"];
    assert!(east.actions.is_empty() && east.delivery.is_none(), "{east:#?}");
    assert!(east.conflicts[0].contains("rejected it: [emerg] unknown directive"), "{east:#?}");
    assert_eq!(r.ctx.deliveries.current("us-east").unwrap().hash, served.hash, "the last good config stays served");
}

/// The order it happens in: the config is served and recorded on the proxy service in one
/// pass, and the task's two rejections arrive afterwards. They still hold the cluster.
#[tokio::test(start_paused = true)]
async fn a_rejection_reported_after_the_config_was_recorded_holds_the_cluster() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, hitless(&seed_config()));
    converge(&mut r).await;
    swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
    converge(&mut r).await;
    let served = r.ctx.deliveries.current("us-east").unwrap();
    // The proxy's task, which the core takes reports of.
    let proxy = swarm.service("interlock-proxy-us-east").unwrap();
    swarm.edit(|o| {
        o.tasks.push(reconcilers::observed::TaskFacts {
            id: "t-proxy".into(),
            service_id: proxy.id.clone(),
            node_id: "lb-00".into(),
            running: true,
            ..Default::default()
        })
    });
    assert!(r.pass().await.unwrap().plan.is_empty(), "served and recorded: converged");
    let running = ("the-previous-one", served.generation - 1);
    let rejecting = proxy_task_rejects(running, &served.hash, "[emerg] unknown directive");
    r.ctx.deliveries.accept_report("us-east", rejecting.clone()).unwrap();
    assert!(r.pass().await.unwrap().plan.clusters["us-east"].conflicts.is_empty(), "one report holds nothing");
    r.ctx.deliveries.accept_report("us-east", rejecting).unwrap();
    let report = r.pass().await.unwrap();
    let east = &report.plan.clusters["us-east"];
    assert!(east.delivery.is_none(), "{east:#?}");
    assert!(east.conflicts[0].contains("rejected it: [emerg] unknown directive"), "{east:#?}");
}

/// A tenant names, as the CA its tasks are verified against, a secret that holds no CA: the
/// operator's check (stand-ins for every secret) accepts the config, the proxy task's own check
/// rejects it quoting the file. That tenant is quarantined and the cluster goes on without it:
/// another tenant's change is served, not held behind it.
#[tokio::test(start_paused = true)]
async fn a_secret_a_proxy_task_cannot_load_quarantines_the_tenants_naming_it_not_the_cluster() {
    use reconcilers::labels::{LABEL_SSL_BACKEND, LABEL_SSL_BACKEND_CA};
    use reconcilers::ownership::LABEL_UNLOADABLE_SECRETS;
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, hitless(&seed_config()));
    converge(&mut r).await;
    tenant(&swarm, "hostile", "hostile.local", "2026-01-05T00:00:00Z");
    swarm.edit(|o| {
        o.secrets.push("not-a-ca".into());
        let hostile = o.services.iter_mut().find(|s| s.def.name == "hostile").unwrap();
        hostile.def.labels.insert(LABEL_SSL_BACKEND.into(), "true".into());
        hostile.def.labels.insert(LABEL_SSL_BACKEND_CA.into(), "not-a-ca".into());
    });
    converge(&mut r).await;
    let rejected = r.ctx.deliveries.current("us-east").unwrap();
    assert!(rejected.files.iter().any(|f| f.content.contains("hostile.local")), "the core's check let it through");
    r.ctx.deliveries.set_tasks("us-east", [("t-proxy".to_owned(), "lb-00".to_owned())].into());
    let rejecting = proxy_task_rejects(
        ("the-previous-one", rejected.generation - 1),
        &rejected.hash,
        "nginx -t -q -c /etc/nginx/nginx.conf rejects it: 2026/12/05 08:40:35 [emerg] 31#31: \
         SSL_CTX_load_verify_locations(\"/run/secrets/.interlock-backend-ca/not-a-ca\") failed \
         (SSL: error:05800088:x509 certificate routines::no certificate or crl found)",
    );
    r.ctx.deliveries.accept_report("us-east", rejecting.clone()).unwrap();
    r.ctx.deliveries.accept_report("us-east", rejecting).unwrap();
    // Another tenant's change arrives meanwhile.
    tenant(&swarm, "neighbour", "neighbour.local", "2026-01-06T00:00:00Z");
    let report = r.pass().await.unwrap();
    r.settle().await;
    let east = &report.plan.clusters["us-east"];
    assert!(east.conflicts.is_empty(), "the cluster is not held: {east:#?}");
    let why = reason(&report.plan, "us-east", "hostile").expect("the tenant naming the secret is quarantined");
    assert!(
        why.contains("cannot load the secret \"not-a-ca\" this service names in com.docker.lb.ssl_backend_ca"),
        "{why}"
    );
    let served = r.ctx.deliveries.current("us-east").unwrap();
    let text: String = served.files.iter().map(|f| f.content.as_str()).collect();
    assert!(text.contains("neighbour.local") && !text.contains("hostile.local"), "{text}");
    converge(&mut r).await;
    assert!(r.pass().await.unwrap().plan.is_empty(), "and then nothing");
    // Recorded on the proxy service by the secret's ID: another replica, or a restarted core,
    // which never saw the report, keeps it out and plans nothing.
    let proxy = swarm.service("interlock-proxy-us-east").unwrap();
    assert_eq!(proxy.def.labels.get(LABEL_UNLOADABLE_SECRETS).map(String::as_str), Some("ca:secret-id-not-a-ca"));
    let fresh = reconciler(&swarm, hitless(&seed_config()));
    let (_, plan) = fresh.plan().await.unwrap();
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(reason(&plan, "us-east", "hostile").is_some_and(|why| why.contains("not-a-ca")), "{plan:#?}");
    // The secret re-created (another ID, a real CA this time): judged afresh.
    swarm.edit(|o| {
        o.secret_ids.insert("not-a-ca".into(), "secret-id-re-created".into());
    });
    let (_, plan) = fresh.plan().await.unwrap();
    assert!(reason(&plan, "us-east", "hostile").is_none(), "{plan:#?}");
}

/// The same secret on a cluster that rolls its proxy: the new tasks cannot start on the config
/// (nginx prints why), Swarm rolls the update back, and the core reads the failed tasks' words:
/// the tenant naming the secret is quarantined and the proxy rolls onto a config without it,
/// instead of waiting, held, for the next change to fail the same way.
#[tokio::test(start_paused = true)]
async fn a_rolled_back_proxy_update_quarantines_the_tenant_whose_secret_its_tasks_could_not_load() {
    use reconcilers::labels::{LABEL_SSL_BACKEND, LABEL_SSL_BACKEND_CA};
    use reconcilers::ownership::{LABEL_SPEC_HASH, LABEL_UNLOADABLE_SECRETS};
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, seed_config());
    converge(&mut r).await;
    let before = swarm.service("interlock-proxy-us-east").unwrap();
    tenant(&swarm, "hostile", "hostile.local", "2026-01-05T00:00:00Z");
    swarm.edit(|o| {
        o.secrets.push("not-a-ca".into());
        let hostile = o.services.iter_mut().find(|s| s.def.name == "hostile").unwrap();
        hostile.def.labels.insert(LABEL_SSL_BACKEND.into(), "true".into());
        hostile.def.labels.insert(LABEL_SSL_BACKEND_CA.into(), "not-a-ca".into());
    });
    converge(&mut r).await;
    // Swarm tried it, the tasks failed, it rolled back: Spec is the old one, PreviousSpec ours.
    let failed = swarm.service("interlock-proxy-us-east").unwrap();
    swarm.edit(|o| {
        let east = o.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap();
        east.def = before.def.clone();
        east.update_state = Some("rollback_completed".into());
        east.previous_spec_hash = failed.def.labels.get(LABEL_SPEC_HASH).cloned();
    });
    // The update's task that did not start, and what it printed: its access log (anything a
    // client sends), then nginx's own fatal line.
    swarm.edit(|o| {
        o.tasks.push(reconcilers::observed::TaskFacts {
            id: "t-failed".into(),
            service_id: failed.id.clone(),
            node_id: "lb-00".into(),
            failed: true,
            created: reconcilers::acme::rfc3339(std::time::SystemTime::now()),
            ..Default::default()
        })
    });
    swarm.set_task_logs(
        "t-failed",
        "10.0.0.9 - - [05/Dec/2026:09:10:00 +0000] \"GET /'/run/secrets/.interlock-backend-ca/victim-ca' HTTP/1.1\" 404\n\
         2026/12/05 09:10:01 [emerg] 1#1: SSL_CTX_load_verify_locations(\"/run/secrets/.interlock-backend-ca/not-a-ca\") failed (SSL: error:05800088:x509 certificate routines::no certificate or crl found)\n\
         nginx: configuration file /etc/nginx/nginx.conf test failed\n",
    );
    // Another tenant's change arrives meanwhile.
    tenant(&swarm, "neighbour", "neighbour.local", "2026-01-06T00:00:00Z");
    let report = r.pass().await.unwrap();
    r.settle().await;
    let east = &report.plan.clusters["us-east"];
    assert!(east.conflicts.is_empty(), "not held until the next change: {east:#?}");
    let why = reason(&report.plan, "us-east", "hostile").expect("the tenant naming the secret is quarantined");
    assert!(why.contains("cannot load the secret \"not-a-ca\""), "{why}");
    let proxy = swarm.service("interlock-proxy-us-east").unwrap();
    assert_eq!(proxy.def.labels.get(LABEL_UNLOADABLE_SECRETS).map(String::as_str), Some("ca:secret-id-not-a-ca"));
    assert!(
        east.actions.iter().any(|a| matches!(a, plan::Action::UpdateService { .. })),
        "the proxy rolls onto a config with the neighbour and without it: {east:#?}"
    );
    // Each failed task's log is read once.
    converge(&mut r).await;
    r.pass().await.unwrap();
    assert_eq!(swarm.task_log_reads(), 1);
    assert!(reason(&r.pass().await.unwrap().plan, "us-east", "hostile").is_some(), "still quarantined");
}

/// The walk-through's nodes, unlabelled: a manager and two load balancers.
fn with_nodes(swarm: &MemorySwarm) {
    let node = |hostname: &str| reconcilers::observed::NodeFacts {
        id: format!("id-{hostname}"),
        hostname: hostname.into(),
        role: reconcilers::observed::NodeRole::Worker,
        availability: reconcilers::observed::NodeAvailability::Active,
        ready: true,
        address: None,
        labels: BTreeMap::from([("hand".to_owned(), "1".to_owned())]),
        engine_labels: BTreeMap::new(),
        os: None,
        arch: None,
        version: 3,
        leader: false,
    };
    swarm.edit(|o| o.nodes = vec![node("mgr"), node("lb-00"), node("lb-01")]);
}

/// The walk-through with its `docker node update --label-add` steps as `[NodeLabels]`.
fn seed_with_node_labels(extra: &str) -> Config {
    let text = format!(
        "{extra}\n{}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n[NodeLabels.lb-01]\nregion = \"us-west\"\n",
        reconcilers::fixtures::SEED
    );
    reconcilers::config::parse("t", &text).expect("valid").config
}

#[tokio::test(start_paused = true)]
async fn node_labels_are_written_before_the_clusters_and_then_never_again() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_nodes(&swarm);
    let mut r = reconciler(&swarm, seed_with_node_labels(""));
    let report = r.pass().await.unwrap();
    r.settle().await;
    let attempts = swarm.attempts();
    assert_eq!(attempts[..2], ["update node lb-00", "update node lb-01"], "{attempts:#?}");
    let lb = swarm.node("lb-00").unwrap();
    assert_eq!((lb.labels["region"].as_str(), lb.labels["hand"].as_str()), ("us-east", "1"));
    assert_eq!(swarm.node("mgr").unwrap().version, 3, "no table, no record: never written");
    assert!(report.failures.is_empty(), "{report:#?}");
    converge(&mut r).await;
    let (_, writes) = swarm.requests();
    assert_eq!(r.pass().await.unwrap().writes, 0);
    assert_eq!(swarm.requests().1, writes, "a converged swarm gets no write");
}

#[tokio::test(start_paused = true)]
async fn a_failing_node_is_reported_and_retried_and_holds_up_no_cluster() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_nodes(&swarm);
    swarm.failing("lb-00", 1);
    let mut r = reconciler(&swarm, seed_with_node_labels(""));
    let report = r.pass().await.unwrap();
    r.settle().await;
    assert!(report.failures["node lb-00"].contains("injected failure"), "{report:#?}");
    assert_eq!(swarm.node("lb-01").unwrap().labels["region"], "us-west");
    assert!(swarm.service("interlock-proxy-us-east").is_some(), "the clusters went ahead");
    converge(&mut r).await;
    assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "us-east", "written on the next pass");
}

#[tokio::test(start_paused = true)]
async fn a_node_changed_since_it_was_read_is_read_again_and_decided_afresh() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_nodes(&swarm);
    swarm.out_of_sequence_once("lb-00");
    let mut r = reconciler(&swarm, seed_with_node_labels(""));
    let report = r.pass().await.unwrap();
    assert!(report.failures.is_empty(), "{report:#?}");
    let updates = swarm.attempts().iter().filter(|a| *a == "update node lb-00").count();
    assert_eq!(updates, 2, "the lost update, then the retry at the fresh version");
    let lb = swarm.node("lb-00").unwrap();
    assert_eq!(lb.labels["someone-else"], "was-here", "the other writer's label is kept");
    assert_eq!(lb.labels["region"], "us-east");
}

#[tokio::test(start_paused = true)]
async fn a_second_node_reporting_a_hostname_gets_nothing_and_the_first_is_left_alone_until_named_by_id() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_nodes(&swarm);
    let mut r = reconciler(&swarm, seed_with_node_labels(""));
    converge(&mut r).await;
    let node_by_id = |id: &str| swarm.observed().nodes.into_iter().find(|n| n.id == id).unwrap();
    let labelled = node_by_id("id-lb-00").labels;
    assert_eq!(labelled["region"], "us-east");

    // A worker joins calling itself lb-00.
    swarm.edit(|o| {
        let mut impostor = o.nodes.iter().find(|n| n.id == "id-lb-01").unwrap().clone();
        (impostor.id, impostor.hostname, impostor.labels) = ("id-impostor".into(), "lb-00".into(), BTreeMap::new());
        o.nodes.push(impostor);
    });
    let (_, writes) = swarm.requests();
    for _ in 0..2 {
        let report = r.pass().await.unwrap();
        r.settle().await;
        assert!(report.plan.nodes.is_empty(), "{:#?}", report.plan.nodes);
        assert_eq!(report.plan.node_warnings.len(), 1, "{:#?}", report.plan.node_warnings);
        assert!(report.plan.node_warnings[0].starts_with("hostname lb-00 is reported by nodes id-lb-00, id-impostor"));
    }
    assert_eq!(r.node_warnings_seen.len(), 1, "logged once");
    assert_eq!(swarm.requests().1, writes, "nothing written");
    assert_eq!(node_by_id("id-lb-00").labels, labelled, "not written, nothing removed");
    assert!(node_by_id("id-impostor").labels.is_empty(), "the impostor gets nothing");

    // The operator names the right node by ID; its write loses the lock once and is decided
    // again from a fresh read, still refused the hostname tables.
    let text = format!(
        "{}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n[NodeLabels.lb-01]\nregion = \"us-west\"\n[NodeLabels.\"id-lb-00\"]\nregion = \"us-east-1\"\nrack = \"r1\"\n",
        reconcilers::fixtures::SEED
    );
    r.reconfigure(reconcilers::config::parse("t", &text).expect("valid").config);
    swarm.out_of_sequence_once("lb-00");
    let report = r.pass().await.unwrap();
    r.settle().await;
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(report.plan.node_warnings.len(), 1, "the clash lasts");
    let lb = node_by_id("id-lb-00");
    assert_eq!((lb.labels["region"].as_str(), lb.labels["rack"].as_str()), ("us-east-1", "r1"));
    assert_eq!(lb.labels["nodetype"], "loadbalancer", "the hostname tables' keys stay as they were");
    assert_eq!(lb.labels["someone-else"], "was-here");
    assert!(node_by_id("id-impostor").labels.is_empty());
    assert!(r.pass().await.unwrap().plan.nodes.is_empty(), "converged");
}

#[tokio::test(start_paused = true)]
async fn drift_is_reverted_or_with_report_left_alone() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_nodes(&swarm);
    let mut r = reconciler(&swarm, seed_with_node_labels(""));
    converge(&mut r).await;
    let hand_edit = |swarm: &MemorySwarm| {
        swarm.edit(|o| {
            let proxy = o.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap();
            proxy.def.ports[0].published = 8081;
            proxy.version += 1;
            let lb = o.nodes.iter_mut().find(|n| n.hostname == "lb-00").unwrap();
            lb.labels.insert("region".into(), "elsewhere".into());
            lb.version += 1;
        })
    };
    hand_edit(&swarm);
    let report = r.pass().await.unwrap();
    r.settle().await;
    assert_eq!(
        report.plan.drift(),
        ["node lb-00: label region edited by hand", "service interlock-proxy-us-east: ports edited by hand"]
    );
    assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "us-east", "reverted");
    assert_eq!(swarm.service("interlock-proxy-us-east").unwrap().def.ports[0].published, 80, "reverted");
    assert!(r.pass().await.unwrap().plan.drift().is_empty());

    r.reconfigure(seed_with_node_labels("DriftPolicy = \"report\""));
    hand_edit(&swarm);
    let (_, writes) = swarm.requests();
    let report = r.pass().await.unwrap();
    assert_eq!(report.plan.drift().len(), 2);
    assert_eq!(report.writes, 0);
    assert_eq!(swarm.requests().1, writes, "reported, not written");
    assert_eq!(swarm.node("lb-00").unwrap().labels["region"], "elsewhere");
}

/// A swarm whose managers are `nodes` (`(id, leader)`) running the core service `interlock`
/// with one task per `(task, node, created)`.
fn with_core_replicas(swarm: &MemorySwarm, nodes: &[(&str, bool)], replicas: &[(&str, &str, &str)]) {
    use reconcilers::fixtures::{app, manager, task};
    swarm.edit(|o| {
        o.nodes = nodes.iter().map(|(id, leader)| manager(id, *leader)).collect();
        let mut core = app("svc-core", "interlock", "none", "net-interlock");
        core.def.labels.clear();
        o.services.push(core);
        for (id, node, created) in replicas {
            o.tasks.push(reconcilers::observed::TaskFacts {
                node_id: (*node).into(),
                created: (*created).into(),
                ..task(id, "svc-core", "net-interlock", "10.0.9.1")
            });
        }
    });
}

/// A replica of the core service `interlock` sharing `swarm`, its task `task`.
fn core_replica(swarm: &MemorySwarm, config: Config, task: &str) -> Reconciler<MemorySwarm> {
    let mut ctx = Context::new(swarm.clone(), ProxyChecker::unchecked());
    ctx.core_service = Some("interlock".into());
    Reconciler::new(ctx, config).as_replica(Replica::Task(task.into()))
}

#[tokio::test(start_paused = true)]
async fn only_the_replica_on_the_raft_leader_writes_and_a_standby_takes_over() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_core_replicas(&swarm, &[("m1", true), ("m2", false)], &[("t1", "m1", "1"), ("t2", "m2", "1")]);
    let mut standby = core_replica(&swarm, hitless(&seed_config()), "t2");
    let report = standby.pass().await.unwrap();
    assert_eq!(report.writes, 0, "a standby writes nothing: {report:#?}");
    assert_eq!(report.standby.as_deref(), Some("manager-m1"));
    assert!(!report.plan.is_empty(), "it still plans");
    let mut active = core_replica(&swarm, hitless(&seed_config()), "t1");
    converge(&mut active).await;
    // Only the writer serves configs; the standby names it.
    let report = standby.pass().await.unwrap();
    assert!(report.plan.is_empty() && report.standby.is_some());
    assert!(standby.ctx.deliveries.current("us-east").is_none());
    assert_eq!(standby.ctx.deliveries.serving(), Serving::Standby("manager-m1".into()));
    assert_eq!(active.ctx.deliveries.serving(), Serving::Writer);
    let served = active.ctx.deliveries.current("us-east").unwrap();
    // m1 is lost; Raft elects m2: its replica writes from its next pass, and continues the
    // generations the swarm recorded.
    swarm.edit(|o| {
        o.nodes = vec![reconcilers::fixtures::manager("m2", true)];
        o.tasks.retain(|t| t.node_id != "m1");
        scale_demo_east(o, "10.0.1.9");
    });
    let report = standby.pass().await.unwrap();
    standby.settle().await;
    assert_eq!(report.standby, None);
    assert_eq!(report.writes, 1, "the new active replica delivers the change: {report:#?}");
    let next = standby.ctx.deliveries.current("us-east").unwrap();
    assert!(next.generation > served.generation, "{} after {}", next.generation, served.generation);
    // While Raft elects (no leader), nobody writes.
    swarm.edit(|o| {
        o.nodes = vec![reconcilers::fixtures::manager("m2", false)];
        scale_demo_east(o, "10.0.1.10");
    });
    assert_eq!(standby.pass().await.unwrap().writes, 0);
}

#[tokio::test(start_paused = true)]
async fn of_two_replicas_on_one_manager_exactly_one_writes_and_the_newer_never_takes_over() {
    let swarm = MemorySwarm::new(seed_swarm());
    let (old, new) = ("2026-12-04T10:00:00.000000000Z", "2026-12-04T11:00:00.000000000Z");
    // The newer task has the lower ID: age decides, not the ID.
    with_core_replicas(&swarm, &[("m1", true)], &[("t9", "m1", old), ("t1", "m1", new)]);
    let mut older = core_replica(&swarm, hitless(&seed_config()), "t9");
    let mut newer = core_replica(&swarm, hitless(&seed_config()), "t1");
    for _ in 0..3 {
        let (a, b) = tokio::join!(older.pass(), newer.pass());
        let (a, b) = (a.unwrap(), b.unwrap());
        older.settle().await;
        assert_eq!(a.standby, None, "the older replica writes");
        assert_eq!(b.standby.as_deref(), Some("manager-m1"));
        assert_eq!(b.writes, 0);
    }
    assert_eq!(swarm.most_writers_at_once("us-east"), 1);
    // The older one's task stops (a start-first update of the core): the newer one writes.
    swarm.edit(|o| o.tasks.retain(|t| t.id != "t9"));
    swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
    let report = newer.pass().await.unwrap();
    assert_eq!(report.standby, None);
    newer.settle().await;
    assert!(newer.pass().await.unwrap().plan.is_empty(), "it converged");
}

#[tokio::test(start_paused = true)]
async fn a_core_run_by_hand_beside_a_core_service_writes_nothing() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_core_replicas(&swarm, &[("m1", true)], &[("t1", "m1", "1")]);
    let mut service = core_replica(&swarm, seed_config(), "t1");
    converge(&mut service).await;
    let (_, writes) = swarm.requests();
    let mut by_hand = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::unchecked()), seed_config())
        .as_replica(Replica::ByHand);
    swarm.edit(|o| scale_demo_east(o, "10.0.1.9"));
    let report = by_hand.pass().await.unwrap();
    assert_eq!(report.standby.as_deref(), Some("manager-m1"), "{report:#?}");
    assert_eq!(swarm.requests().1, writes, "nothing written");
    // The core service gone, the core run by hand writes.
    swarm.edit(|o| o.tasks.retain(|t| t.id != "t1"));
    let report = by_hand.pass().await.unwrap();
    assert_eq!(report.standby, None);
    assert!(report.writes > 0);
}

#[tokio::test(start_paused = true)]
async fn a_lone_core_on_a_follower_manager_writes() {
    let swarm = MemorySwarm::new(seed_swarm());
    with_core_replicas(&swarm, &[("m1", true), ("m2", false)], &[("t-core", "m2", "1")]);
    let mut lone = core_replica(&swarm, seed_config(), "t-core");
    let report = lone.pass().await.unwrap();
    assert_eq!(report.standby, None, "no replica on the leader: the lone core writes");
    assert!(report.writes > 0, "{report:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_config_that_could_not_be_checked_is_not_rolled_out_and_no_service_is_blamed() {
    fn broken_tmp(_: ProxyKind, _: &str) -> Verdict {
        Verdict::Failed("cannot prepare the check in /tmp: Read-only file system (os error 30)".into())
    }
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = Reconciler::new(Context::new(swarm.clone(), ProxyChecker::judging(broken_tmp)), seed_config());
    let report = r.pass().await.unwrap();
    r.settle().await;
    for cluster in report.plan.clusters.values() {
        assert!(cluster.actions.is_empty(), "{cluster:#?}");
        assert!(cluster.quarantined.is_empty(), "no service is blamed");
        assert!(cluster.conflicts[0].contains("could not be checked (cannot prepare the check in /tmp: Read-only"));
    }
    assert!(swarm.service("interlock-proxy-us-east").is_none(), "nothing unchecked is rolled out");
}

#[tokio::test(start_paused = true)]
async fn a_proxy_task_swarm_left_waiting_for_a_freed_port_is_rescheduled_once_due() {
    let swarm = MemorySwarm::new(seed_swarm());
    let mut r = reconciler(&swarm, seed_config());
    converge(&mut r).await;
    let east = swarm.service("interlock-proxy-us-east").unwrap();
    let west = swarm.service("interlock-proxy-us-west").unwrap();
    swarm.edit(|o| {
        let waiting = |id: &str, service: &str, running: bool| reconcilers::observed::TaskFacts {
            id: id.into(),
            service_id: service.into(),
            node_id: "lb-00".into(),
            running,
            addresses: vec![],
            stuck_pending: !running,
            failed: false,
            created: String::new(),
        };
        // A load-balancer node, drained at first: nothing could take the task.
        let lb = reconcilers::fixtures::manager("lb-00", false);
        o.nodes.push(reconcilers::observed::NodeFacts {
            role: reconcilers::observed::NodeRole::Worker,
            availability: reconcilers::observed::NodeAvailability::Drain,
            ..lb
        });
        o.tasks.push(waiting("p-east", &east.id, false));
        // us-west also has one waiting, but another of its tasks runs: it is left alone.
        o.tasks.push(waiting("p-west", &west.id, false));
        o.tasks.push(waiting("p-west-2", &west.id, true));
    });
    assert_eq!(r.pass().await.unwrap().writes, 0, "not yet: Swarm may still place it");
    tokio::time::advance(STRANDED_AFTER + Duration::from_secs(1)).await;
    assert_eq!(r.pass().await.unwrap().writes, 0, "every node drained: a reschedule changes nothing");
    swarm.edit(|o| o.nodes[0].availability = reconcilers::observed::NodeAvailability::Active);
    assert_eq!(r.pass().await.unwrap().writes, 0, "stranded anew from the first pass a node could take it");
    tokio::time::advance(STRANDED_AFTER + Duration::from_secs(1)).await;
    let report = r.pass().await.unwrap();
    assert_eq!(report.writes, 1, "{report:#?}");
    assert!(swarm.tasks().iter().any(|t| t.id == "p-east" && t.running), "rescheduled and running");
    assert!(swarm.tasks().iter().any(|t| t.id == "p-west" && t.stuck_pending), "a running service is not touched");
    assert_eq!(r.pass().await.unwrap().writes, 0, "once");
}
