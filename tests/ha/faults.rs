//! Faults, on the high-availability lab (`deploy/lab/swarm-lab.sh ha-up`, three managers of its
//! own; `deploy/test.sh` runs this after `tests/ha/failover.rs`, beside the main lab's tests).
//!
//! One hitless nginx cluster: its proxy placed by `[NodeLabels]` on the lab's worker (`lb`
//! below), its apps on the leader, and the core a Swarm service on the leader whose Docker socket
//! is a relay in this test ([`support::relay`]) to the *other* follower's engine (`engine`), so
//! that engine can be restarted, made slow or failing while the core keeps running (the core,
//! connected to a follower's engine and not finding its own container there, runs as a lone core,
//! which writes). An app is
//! under continuous load through the proxy the whole time (4 clients, a new connection per
//! request), and each fault is counted apart:
//! 1. the core's engine restarted in the middle of a pass (the relay slows the pass's reads so it
//!    is surely in flight; the event stream drops and comes back), a new app created meanwhile;
//! 2. the Docker API slow (3 s per request) for 30 s, then failing (every request answered 503)
//!    for 30 s, a new app created in each: passes back off (counted at the relay), no write storm;
//! 3. the core killed with SIGKILL in the middle of a proxy update (the write reaches the engine,
//!    its answer is held), then restarted by Swarm;
//! 4. a read-only filesystem (so `/tmp`) for the core's config check: the cluster is held with the
//!    reason in `/status`, the new app is not rolled out unchecked; writable again, it is;
//! 5. the proxy's node's engine (a worker's) restarted, the proxy task with it: it comes back
//!    serving;
//! 6. the proxy's node's network (the load-balancer worker's link) cut for 30 s and restored.
//!
//! Faults 1–4 do not touch the serving path: 0 failed requests each. Faults 5 and 6 do (the
//! proxy is stopped, or unreachable): their failed requests are counted, and after each the
//! swarm must be served again. Afterwards: every route served, one proxy and one extension
//! service, no config object beyond those mounted, the apps' specs and a hand-set node label
//! untouched, and no write over two PollIntervals. Figures are printed (`FIGURES`), not asserted
//! beyond these bounds.
//!
//! Run it alone: `cargo test --features lab --test ha_faults -- --ignored --nocapture` with the HA lab
//! up (built with the `lab` feature, and #[ignore]d so that the main lab's run leaves it out:
//! tests/README.md).

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::ha::{
    self, addr_of, container_of, core_status, create_app, docker, lab_script, leader_seen_by, mounted_configs, owned,
    socket_of, step, try_docker, wait_for,
};
use support::load::{Load, LoadReport, LoadSpec, Mode, fetch, time_to_served};
use support::relay::{self, Relay};
use support::service;

const CORE: &str = "il-fault-core";
const CORE_CONFIG: &str = "il-fault-config";
const CLUSTER: &str = "faults";
const PROXY: &str = "interlock-proxy-faults";
const EXTENSION: &str = "interlock-ext-faults";
const PORT: u16 = 8091;
const POLL: Duration = Duration::from_secs(5);
const RELAY_SOCKET: &str = "/run/interlock-relay/core.sock";
const CONFIG_FILE: &str = "target/faults.toml";
const APPS: [&str; 6] = ["il-fault-a", "il-fault-b", "il-fault-c", "il-fault-d", "il-fault-e", "il-fault-f"];

fn host(app: &str) -> String {
    format!("{}.faults.local", app.trim_start_matches("il-fault-"))
}

fn config(lb: &str) -> String {
    ha::hitless_cluster_toml(&format!("EndpointOverride = \"{CORE}:8080\""), POLL, CLUSTER, "fault-role", lb, PORT)
}

/// The core as a Swarm service on `node`, its Docker socket the relay's.
fn create_core(node: &str) {
    service::Create::new()
        .detach()
        .quiet()
        .no_resolve_image()
        .name(CORE)
        .endpoint_mode("dnsrr")
        .network("interlock")
        .constraint(&format!("node.hostname=={node}"))
        .restart_delay("2s")
        .mount(&format!("type=bind,src={RELAY_SOCKET},dst=/var/run/docker.sock"))
        .config(&format!("src={CORE_CONFIG},target=/config.toml"))
        .image("local/interlock:lab")
        .command(&["run", "-c", "/config.toml"])
        .run_with(|args| docker(node, args));
}

fn clean(node: &str) {
    let mut services = vec![CORE];
    services.extend(APPS);
    ha::clean(node, &[CORE], &services);
    let _ = try_docker(node, &["config", "rm", CORE_CONFIG]);
    for n in ha::nodes() {
        let _ = try_docker(node, &["node", "update", "--label-rm", "fault-role", "--label-rm", "fault-hand", &n]);
    }
}

/// The load's counts since the last call (and moves the mark).
fn window(load: &Load, mark: &mut LoadReport) -> LoadReport {
    let now = load.snapshot();
    let part = now.since(mark);
    *mark = now;
    part
}

/// Whether `host` is served (a 200 with the app's page) through the proxy right now.
async fn served(lb: &str, app: &str) -> bool {
    fetch(&addr_of(lb), PORT, &host(app), "/", Duration::from_secs(2))
        .await
        .is_ok_and(|r| r.status == 200 && r.text().contains("interlock-app"))
}

async fn wait_served(lb: &str, app: &str, limit: Duration) -> Duration {
    time_to_served(&addr_of(lb), PORT, &host(app), "interlock-app", limit)
        .await
        .unwrap_or_else(|| panic!("{} not served through {lb}:{PORT} within {limit:?}", host(app)))
}

/// The spec of each app, and whether it was ever updated (`PreviousSpec`): an app's spec is
/// never written by interlock. Not the version index: Swarm's own allocator writes the service
/// object (its endpoint) just after a creation, so an index read at once can move later by
/// itself.
fn app_versions(node: &str, apps: &[&str]) -> Vec<String> {
    let format = "{{json .Spec}}{{if .PreviousSpec}} UPDATED{{end}}";
    apps.iter().map(|a| docker(node, &["service", "inspect", "-f", format, a]).trim().to_owned()).collect()
}

/// The proxy service settled: one task meant to run and running, and none meant to stop that
/// still runs (Swarm replaces the task of a node it lost, and stops the old one when the node
/// is back).
fn proxy_settled(node: &str) -> Option<()> {
    let states = |desired: &str| -> Option<Vec<String>> {
        let out = try_docker(
            node,
            &["service", "ps", "--filter", &format!("desired-state={desired}"), "--format", "{{.CurrentState}}", PROXY],
        )
        .ok()?;
        Some(out.lines().map(str::to_owned).collect())
    };
    let running = states("running")?;
    let stopping = states("shutdown")?;
    (running.len() == 1 && running[0].starts_with("Running") && !stopping.iter().any(|s| s.starts_with("Running")))
        .then_some(())
}

/// Waits until the proxy task has settled and every app is served through it again.
async fn settled_and_served(leader: &str, lb: &str) {
    wait_for("the proxy task settled", Duration::from_secs(120), || proxy_settled(leader));
    for app in APPS {
        wait_served(lb, app, Duration::from_secs(60)).await;
    }
}

fn core_container(node: &str) -> String {
    wait_for("the core's container running", Duration::from_secs(60), || container_of(node, CORE))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "on the HA lab, beside the main lab's tests: deploy/test.sh; alone: cargo test --features lab --test ha_faults -- --ignored --nocapture"]
async fn faults_lose_nothing_and_duplicate_nothing() {
    let started = Instant::now();
    let managers = ha::managers();
    let leader = wait_for("a Raft leader", Duration::from_secs(60), || leader_seen_by(&managers[0]));
    let followers: Vec<String> = managers.iter().filter(|n| **n != leader).cloned().collect();
    let (engine, lb) = (followers[0].clone(), ha::workers()[0].clone());
    step(started, &format!("core and apps on {leader} (the leader), its engine {engine}'s, proxy on {lb}"));
    clean(&leader);
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", "--attachable", "interlock"]);
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", ha::APPS_NETWORK]);
    docker(&leader, &["node", "update", "--label-add", "fault-hand=kept", &lb]);

    let relay = Relay::start(Path::new(RELAY_SOCKET), Path::new(&socket_of(&engine)));
    std::fs::create_dir_all("target").unwrap();
    std::fs::write(CONFIG_FILE, config(&lb)).unwrap();
    docker(&leader, &["config", "create", CORE_CONFIG, CONFIG_FILE]);
    create_core(&leader);
    // Each app's spec right after its creation: interlock never writes an app.
    let versions: Vec<String> = APPS.iter().map(|_| String::new()).collect();
    let versions = std::sync::Mutex::new(versions);
    let app_on = |name: &str| {
        let created = create_app(&leader, name, &host(name), &leader, CLUSTER);
        let i = APPS.iter().position(|a| *a == name).unwrap();
        versions.lock().unwrap()[i] = app_versions(&leader, &[name]).remove(0);
        created
    };
    app_on(APPS[0]).expect("create app a");
    wait_served(&lb, APPS[0], Duration::from_secs(120)).await;
    step(started, "app a served; load on it from now on");
    let load = Load::start(
        LoadSpec::new(&addr_of(&lb), PORT, &[host(APPS[0]).as_str()], Mode::NewConnection, 4)
            .expect_body("interlock-app"),
    );
    let mut mark = load.snapshot();
    let mut figures = Vec::new();
    let mut record = |name: &str, part: &LoadReport, extra: String| {
        let line =
            format!("{name}: {} failed of {} requests{extra}", part.failed_total(), part.ok + part.failed_total());
        step(started, &format!("FIGURES fault {line}"));
        figures.push(line);
    };

    // The first moments of the load are not any fault's: app a is "served" at its first 200, yet
    // for some milliseconds after the reload that brought its route, a few connections still
    // reach the proxy's old workers, whose config has no route for it (seen: 7 answers 503 within
    // 65 ms). So the faults are counted from 2 s after the load starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = window(&load, &mut mark);
    step(started, &format!("load start (a's route 2 s old): {start}"));

    // Idle: what the core asks of Docker when nothing changes.
    let before = relay.counts();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle = relay.counts() - before;
    step(
        started,
        &format!("FIGURES idle: {} reads and {} writes in 30 s (PollInterval {POLL:?})", idle.reads, idle.writes),
    );
    assert_eq!(idle.writes, 0, "a converged swarm gets no writes");
    let part = window(&load, &mut mark);
    assert_eq!(part.failed_total(), 0, "idle, nothing fails: {:#?}", part.failures);

    // 1. The core's engine restarted in the middle of a pass.
    step(started, &format!("1. {engine}'s engine restarted during a pass"));
    // The pass the new app triggers waits at the relay for its reads (longer than the engine's
    // stop takes): the engine stops under it, and the relay then drops what it held.
    relay.set(relay::Mode::Slow(Duration::from_secs(120)));
    let core_before = core_container(&leader);
    app_on(APPS[1]).expect("create app b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    lab_script(&["ha-stop", &engine]);
    let stop_took = stopped.elapsed();
    assert!(!served(&lb, APPS[1]).await, "the pass was still in flight when the engine stopped");
    relay.set(relay::Mode::Pass);
    lab_script(&["ha-start", &engine]);
    wait_served(&lb, APPS[1], Duration::from_secs(60)).await;
    let took = stopped.elapsed();
    assert_eq!(container_of(&leader, CORE), Some(core_before), "the core kept running");
    let part = window(&load, &mut mark);
    record(
        "engine restarted mid-pass",
        &part,
        format!(
            "; the engine took {:.1} s to stop; the new app served {:.1} s after its stop began (stop and start included)",
            stop_took.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
    assert_eq!(part.failed_total(), 0, "{:#?}", part.failures);

    // 2a. The Docker API slow.
    step(started, "2. the Docker API slow (3 s a request) for 30 s");
    let before = relay.counts();
    relay.set(relay::Mode::Slow(Duration::from_secs(3)));
    let slow_from = Instant::now();
    app_on(APPS[2]).expect("create app c");
    let during_slow =
        time_to_served(&addr_of(&lb), PORT, &host(APPS[2]), "interlock-app", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(slow_from.elapsed())).await;
    let slow = relay.counts() - before;
    relay.set(relay::Mode::Pass);
    if during_slow.is_none() {
        wait_served(&lb, APPS[2], 2 * POLL).await;
    }
    let part = window(&load, &mut mark);
    record(
        "Docker API slow",
        &part,
        format!(
            "; {} reads and {} writes in 30 s; the new app served {}",
            slow.reads,
            slow.writes,
            during_slow
                .map_or("after it healed".to_owned(), |d| format!("{:.1} s after its creation", d.as_secs_f64()))
        ),
    );
    assert_eq!(part.failed_total(), 0, "{:#?}", part.failures);
    assert!(slow.writes <= 4, "no write storm: {slow:?}");

    // 2b. The Docker API failing.
    step(started, "2. the Docker API failing (503) for 30 s");
    let before = relay.counts();
    relay.set(relay::Mode::Fail);
    app_on(APPS[3]).expect("create app d");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let failing_status = core_status(&leader, CORE).expect("the core's /status while Docker fails");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let failing = relay.counts() - before;
    relay.set(relay::Mode::Pass);
    let healed = wait_served(&lb, APPS[3], 3 * POLL).await;
    let part = window(&load, &mut mark);
    record(
        "Docker API failing",
        &part,
        format!(
            "; {} requests in 30 s ({} refused), {} writes; the new app served {:.1} s after it healed",
            failing.reads + failing.writes,
            failing.refused,
            failing.writes,
            healed.as_secs_f64()
        ),
    );
    assert_eq!(part.failed_total(), 0, "{:#?}", part.failures);
    assert!(failing_status["pass_error"].is_string(), "the status says why: {failing_status:#}");
    assert_eq!(failing.writes, 0, "nothing is written on a swarm that cannot be read: {failing:?}");
    // 6 reads a pass; backing off from 1 s to PollInterval, 30 s hold about 8 passes, plus the
    // event stream's resubscriptions. A loop without backoff would make hundreds.
    assert!(failing.reads <= 100, "passes back off: {failing:?}");

    // 3. The core killed in the middle of a proxy update.
    step(started, "3. the core killed (SIGKILL) while a write's answer is held");
    relay.set(relay::Mode::HoldNextWrite);
    let killed_core = core_container(&leader);
    app_on(APPS[4]).expect("create app e");
    wait_for("a write held at the relay", Duration::from_secs(30), || relay.write_held().then_some(()));
    docker(&leader, &["kill", "--signal", "KILL", &killed_core]);
    relay.set(relay::Mode::Pass);
    let killed_at = Instant::now();
    wait_for("a new core container", Duration::from_secs(60), || {
        container_of(&leader, CORE).filter(|c| *c != killed_core)
    });
    wait_served(&lb, APPS[4], Duration::from_secs(60)).await;
    let part = window(&load, &mut mark);
    record(
        "core SIGKILLed mid-update",
        &part,
        format!("; converged {:.1} s after the kill", killed_at.elapsed().as_secs_f64()),
    );
    assert_eq!(part.failed_total(), 0, "{:#?}", part.failures);

    // 4. A read-only /tmp for the config check.
    step(started, "4. the core's filesystem read-only (the config check cannot write /tmp)");
    let old = core_container(&leader);
    docker(&leader, &["service", "update", "--detach", "--read-only", CORE]);
    wait_for("the read-only core running", Duration::from_secs(60), || {
        container_of(&leader, CORE).filter(|c| *c != old)
    });
    app_on(APPS[5]).expect("create app f");
    let reason = wait_for("the cluster held with the reason", Duration::from_secs(60), || {
        let status = core_status(&leader, CORE)?;
        let held = status["extensions"][CLUSTER]["held"]
            .as_array()?
            .iter()
            .filter_map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        (!held.is_empty()).then_some(held)
    });
    assert!(reason.to_lowercase().contains("read-only"), "the reason names the fault: {reason}");
    assert!(!served(&lb, APPS[5]).await, "an unchecked config is never rolled out");
    let old = core_container(&leader);
    docker(&leader, &["service", "update", "--detach", "--read-only=false", CORE]);
    wait_for("the writable core running", Duration::from_secs(60), || {
        container_of(&leader, CORE).filter(|c| *c != old)
    });
    let took = wait_served(&lb, APPS[5], Duration::from_secs(60)).await;
    let part = window(&load, &mut mark);
    record(
        "read-only /tmp",
        &part,
        format!("; held with \"{reason}\"; served {:.1} s after the fix", took.as_secs_f64()),
    );
    assert_eq!(part.failed_total(), 0, "{:#?}", part.failures);

    // 5. The proxy's node's engine restarted, the proxy task with it.
    step(started, &format!("5. {lb}'s engine (the proxy's) restarted"));
    let stopped = Instant::now();
    lab_script(&["ha-stop", &lb]);
    lab_script(&["ha-start", &lb]);
    settled_and_served(&leader, &lb).await;
    let outage = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let part = window(&load, &mut mark);
    record(
        "proxy node's engine restarted",
        &part,
        format!("; the proxy task settled and every route served {:.1} s after the stop began", outage.as_secs_f64()),
    );

    // 6. The proxy's node's network cut for 30 s.
    step(started, &format!("6. {lb}'s network cut for 30 s"));
    let link = format!("vilab-{lb}");
    let ip = |state: &str| {
        let ok = std::process::Command::new("ip").args(["link", "set", &link, state]).status().expect("run ip");
        assert!(ok.success(), "ip link set {link} {state}");
    };
    ip("down");
    tokio::time::sleep(Duration::from_secs(30)).await;
    ip("up");
    let restored = Instant::now();
    // Swarm may have replaced the proxy's task while it could not see the node: it stops the
    // old one and starts the new one when the node is back, which the count includes.
    settled_and_served(&leader, &lb).await;
    let after = restored.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let part = window(&load, &mut mark);
    record(
        "proxy node's network cut 30 s",
        &part,
        format!(
            "; the proxy task settled and every route served {:.1} s after the link came back",
            after.as_secs_f64()
        ),
    );

    // Serving is steady again, and the swarm is as it should be.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calm = window(&load, &mut mark);
    assert_eq!(calm.failed_total(), 0, "after the faults, no request fails: {:#?}", calm.failures);
    let report = load.stop().await;
    // After a partition Swarm may take a while to answer list calls again.
    wait_for("the swarm answers", Duration::from_secs(90), || try_docker(&leader, &["service", "ls", "-q"]).ok());
    let (services, configs, secrets) = owned(&leader);
    assert_eq!(services, [EXTENSION.to_owned(), PROXY.to_owned()], "one proxy and one extension service");
    assert_eq!(configs, mounted_configs(&leader, &[PROXY, EXTENSION]), "no config object beyond those mounted");
    assert_eq!(secrets.len(), 1, "one extension token: {secrets:?}");
    let proxy_tasks = docker(&leader, &["service", "ps", "-q", "--filter", "desired-state=running", PROXY]);
    assert_eq!(proxy_tasks.lines().count(), 1, "one proxy task");
    let labels = docker(&leader, &["node", "inspect", "-f", "{{json .Spec.Labels}}", &lb]);
    assert!(labels.contains(r#""fault-hand":"kept""#) && labels.contains(r#""fault-role":"lb""#), "{labels}");
    let before = relay.counts();
    tokio::time::sleep(2 * POLL + Duration::from_secs(1)).await;
    assert_eq!((relay.counts() - before).writes, 0, "a converged swarm gets no writes");
    let versions = versions.into_inner().unwrap();
    assert_eq!(app_versions(&leader, &APPS), versions, "the apps' specs are never written after their creation");
    step(started, &format!("load overall: {} ok, {} failed", report.ok, report.failed_total()));
    for line in &figures {
        eprintln!("FIGURES {line}");
    }
    clean(&leader);
}
