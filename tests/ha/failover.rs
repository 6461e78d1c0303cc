//! A standby core takes over when the active one's manager dies, on the high-availability lab
//! (`deploy/lab/swarm-lab.sh ha-up`: a swarm of its own, three managers ha-00..ha-02, so that
//! stopping an engine here disturbs no other lab test; `deploy/test.sh` runs this test beside
//! the others).
//!
//! interlock is deployed as the README says, `docker stack deploy -c deploy/stack.yml` with
//! `INTERLOCK_REPLICAS=3`: one core per manager, only the one on the Raft leader writes. With
//! hitless updates on, one app is served under continuous load through a proxy placed (by
//! `[NodeLabels]`) on a node that is not the leader. Then the leader's engine is killed
//! (SIGKILL, then its containers: a manager that dies, not one that leaves). Proven:
//! - within 3 × PollInterval of the kill, the core on the new Raft leader says `active` in its
//!   `/status` (the other survivor's says `standby`), and it writes: a new app's route, created
//!   as soon as Swarm takes writes again, is served within a PollInterval of its task running (Swarm starts tasks a while after an election);
//! - the loaded app lost no request: serving never depends on the core;
//! - when the dead manager comes back, its core stands by, and the swarm holds exactly one
//!   proxy and one extension service, no config object beyond what they mount, both routes,
//!   and a pass of the active core writes nothing: no object duplicated or lost;
//! - the active core's container killed (its manager stays): Swarm restarts it on the leader's
//!   node, it is active again within 3 × PollInterval and serves a new route.
//!
//! Run it alone: `deploy/lab/swarm-lab.sh up && deploy/lab/swarm-lab.sh ha-up`, then
//! `cargo test --features lab --test ha_failover -- --ignored --nocapture` (built with the `lab`
//! feature, and #[ignore]d so that the main lab's run leaves it out: tests/README.md).

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::ha::{
    self, addr_of, docker, host_of, lab_script, leader_seen_by, mounted_configs, owned, step, try_docker, wait_for,
};
use support::load::{Load, LoadSpec, Mode, time_to_served};

const STACK: &str = "interlock";
const CORE: &str = "interlock_core";
const PROXY: &str = "interlock-proxy-ha";
const EXTENSION: &str = "interlock-ext-ha";
const PORT: u16 = 8090;
// 3 × PollInterval bounds the takeover; Swarm's own election took 9 to 25 s on this lab.
const POLL: Duration = Duration::from_secs(15);
const CONFIG: &str = "target/failover.toml";
const APP_A: &str = "ha-app-a";
const APP_B: &str = "ha-app-b";
const APP_C: &str = "ha-app-c";

/// The test's TOML: one hitless nginx cluster whose proxy is placed on `proxy_node` by a label
/// the TOML declares; the extensions call the core by the stack's service name.
fn write_config(proxy_node: &str) -> PathBuf {
    let text = ha::hitless_cluster_toml("", POLL, "ha", "ha-role", proxy_node, PORT);
    std::fs::create_dir_all("target").unwrap();
    std::fs::write(CONFIG, text).unwrap();
    std::fs::canonicalize(CONFIG).unwrap()
}

/// `docker stack deploy` as the README runs it, three replicas, against `node`.
fn stack_deploy(node: &str, config: &PathBuf) {
    let out = Command::new("docker")
        .args(["-H", &host_of(node), "stack", "deploy", "--resolve-image", "never", "-c", "deploy/stack.yml", STACK])
        .env("INTERLOCK_CONFIG", config)
        .env("INTERLOCK_CONFIG_VERSION", "failover")
        .env("INTERLOCK_REPLICAS", "3")
        .output()
        .expect("run the docker CLI");
    assert!(out.status.success(), "docker stack deploy: {}", String::from_utf8_lossy(&out.stderr));
}

/// Apps created one after another under load before the leader dies.
const NEW_APPS: usize = 10;

fn new_app(n: usize) -> (String, String) {
    (format!("ha-new-{n}"), format!("new-{n}.ha.local"))
}

/// Whatever an earlier run left: the stack, the apps, everything interlock owns.
fn clean(node: &str) {
    let _ = try_docker(node, &["stack", "rm", STACK]);
    let new: Vec<String> = (0..NEW_APPS).map(|n| new_app(n).0).collect();
    let mut apps = vec![APP_A, APP_B, APP_C];
    apps.extend(new.iter().map(String::as_str));
    ha::clean(node, &[CORE], &apps);
}

/// The generation of the config the proxy task on `node` runs (its applied file: `HASH GEN`).
fn proxy_generation(node: &str) -> u64 {
    let Some(id) = ha::container_of(node, PROXY) else { return 0 };
    let applied = try_docker(node, &["exec", &id, "cat", "/interlock/applied"]).unwrap_or_default();
    applied.split_whitespace().nth(1).and_then(|g| g.parse().ok()).unwrap_or(0)
}

/// Three replicas, hitless on: apps created one after another (each served before the next)
/// while the load runs; after each, exactly the leader's replica says it writes, and the proxy
/// task's config generation has gone forward.
async fn new_apps_one_after_another(started: Instant, leader: &str, nodes: &[String], proxy: &str, apps_on: &str) {
    let proxy_addr = addr_of(proxy);
    let mut generations = vec![proxy_generation(proxy)];
    let mut times = Vec::new();
    for n in 0..NEW_APPS {
        let (name, host) = new_app(n);
        let created = Instant::now();
        create_app(leader, &name, &host, apps_on).expect("create a new app");
        time_to_served(&proxy_addr, PORT, &host, "interlock-app", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{host} not served within 30 s"));
        times.push(created.elapsed().as_secs_f64());
        let roles: Vec<_> = nodes.iter().map(|n| role_of(n)).collect();
        let writers = roles.iter().filter(|r| r.as_deref() == Some("active")).count();
        assert_eq!(writers, 1, "exactly one replica writes after app {n}: {roles:?}");
        let last = *generations.last().expect("one");
        let generation = wait_for("the proxy task records its config", Duration::from_secs(10), || {
            let g = proxy_generation(proxy);
            (g > last).then_some(g)
        });
        generations.push(generation);
    }
    let times: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    step(
        started,
        &format!(
            "{NEW_APPS} new apps served after [{}] s; one writer throughout; proxy config generations {generations:?}",
            times.join(", ")
        ),
    );
    assert!(generations.windows(2).all(|w| w[0] < w[1]), "generations only go forward: {generations:?}");
}

fn create_app(on: &str, name: &str, host: &str, node: &str) -> Result<String, String> {
    ha::create_app(on, name, host, node, "ha")
}

fn role_of(node: &str) -> Option<String> {
    ha::role_of(node, CORE)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "on the HA lab, beside the main lab's tests: deploy/test.sh; alone: cargo test --features lab --test ha_failover -- --ignored --nocapture"]
async fn a_standby_core_takes_over_when_the_leaders_manager_dies() {
    let started = Instant::now();
    let nodes = ha::managers();
    assert_eq!(nodes.len(), 3, "three managers");
    let leader = wait_for("a Raft leader", Duration::from_secs(60), || leader_seen_by(&nodes[0]));
    // The proxy and the apps run on the two others: what dies is the writer, not the serving path.
    let others: Vec<String> = nodes.iter().filter(|n| **n != leader).cloned().collect();
    let (proxy_node, app_node) = (others[0].clone(), others[1].clone());
    step(started, &format!("leader {leader}; proxy on {proxy_node}, apps on {app_node}"));
    clean(&leader);
    for n in &nodes {
        let _ = try_docker(&leader, &["node", "update", "--label-rm", "ha-role", n]);
    }
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", "--attachable", "interlock"]);
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", "ha-apps"]);

    step(started, "docker stack deploy, three replicas");
    stack_deploy(&leader, &write_config(&proxy_node));
    wait_for("a core on each manager", Duration::from_secs(90), || {
        let out = try_docker(&leader, &["service", "ps", "-q", "--filter", "desired-state=running", CORE]).ok()?;
        let running =
            try_docker(&leader, &["service", "ls", "--filter", &format!("name={CORE}"), "--format", "{{.Replicas}}"])
                .ok()?;
        // "3/3 (max 1 per node)"
        (out.lines().count() == 3 && running.trim().starts_with("3/3")).then_some(())
    });
    create_app(&leader, APP_A, "a.ha.local", &app_node).expect("create app a");
    let proxy_addr = addr_of(&proxy_node);
    time_to_served(&proxy_addr, PORT, "a.ha.local", "interlock-app", Duration::from_secs(120))
        .await
        .expect("app a served through the proxy");
    let roles = wait_for("the leader's core active, the others standby", Duration::from_secs(30), || {
        let roles: Vec<_> = nodes.iter().map(|n| role_of(n)).collect();
        let want = |n: &String| Some(if *n == leader { "active" } else { "standby" }.to_owned());
        nodes.iter().zip(&roles).all(|(n, r)| *r == want(n)).then_some(roles)
    });
    step(started, &format!("app a served; roles {roles:?}"));

    let load = Load::start(
        LoadSpec::new(&proxy_addr, PORT, &["a.ha.local"], Mode::NewConnection, 4).expect_body("interlock-app"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    new_apps_one_after_another(started, &leader, &nodes, &proxy_node, &app_node).await;

    step(started, &format!("killing {leader}'s engine"));
    let killed = Instant::now();
    lab_script(&["ha-stop", &leader, "--kill"]);
    // The new leader, and the moment the survivors see it.
    let (new_leader, elected) = wait_for("a new Raft leader", Duration::from_secs(60), || {
        others.iter().find_map(|n| leader_seen_by(n).filter(|l| *l != leader)).map(|l| (l, killed.elapsed()))
    });
    step(started, &format!("{new_leader} leads, {:.1} s after the kill", elected.as_secs_f64()));
    // The takeover: the new leader's core says it writes.
    let bound = 3 * POLL;
    let active = wait_for("the new leader's core active", bound.saturating_sub(killed.elapsed()), || {
        (role_of(&new_leader).as_deref() == Some("active")).then(|| killed.elapsed())
    });
    step(started, &format!("{new_leader}'s core active, {:.1} s after the kill", active.as_secs_f64()));
    // And it does write: a new app's route, once Swarm takes the service (it refuses writes for a
    // while after an election), is served within a PollInterval.
    let mut refusals = 0;
    let accepted = wait_for("the swarm takes a service create", Duration::from_secs(90), || {
        match create_app(&new_leader, APP_B, "b.ha.local", &app_node) {
            Ok(_) => Some(Instant::now()),
            Err(e) => {
                refusals += 1;
                if refusals == 1 {
                    step(started, &format!("service create refused: {}", e.trim()));
                }
                None
            }
        }
    });
    // Swarm schedules and starts the task when it can, a while after an election: interlock's
    // part begins when the task runs (the route has a backend to send to).
    let running = wait_for("app b's task running", Duration::from_secs(90), || {
        let state = try_docker(
            &new_leader,
            &["service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", APP_B],
        )
        .ok()?;
        state.lines().any(|l| l.starts_with("Running")).then(Instant::now)
    });
    step(started, &format!("app b's task running {:.1} s after its creation", (running - accepted).as_secs_f64()));
    let served = time_to_served(&proxy_addr, PORT, "b.ha.local", "interlock-app", POLL)
        .await
        .unwrap_or_else(|| panic!("app b not served within PollInterval ({POLL:?}) of its task running"));
    let report = load.stop().await;
    step(
        started,
        &format!(
            "FIGURES failover: leader elected {:.1} s, standby active {:.1} s after the kill (bound {} s); swarm took a service create {:.1} s after the kill ({refusals} refusals), its route served {:.2} s after its task ran; load on app a: {} ok, {} failed",
            elected.as_secs_f64(),
            active.as_secs_f64(),
            bound.as_secs(),
            (accepted - killed).as_secs_f64(),
            served.as_secs_f64(),
            report.ok,
            report.failed_total()
        ),
    );
    assert_eq!(report.failed_total(), 0, "the loaded app lost requests while the leader died: {:#?}", report.failures);
    assert!(report.ok > 0);
    assert_eq!(role_of(&new_leader).as_deref(), Some("active"), "the new leader's core writes");
    let survivor = others.iter().find(|n| **n != new_leader).unwrap();
    assert_eq!(role_of(survivor).as_deref(), Some("standby"));

    step(started, &format!("starting {leader}'s engine again"));
    ha::return_and_converge(&leader, &new_leader, CORE, POLL).await;

    let (services, configs, secrets) = owned(&new_leader);
    assert_eq!(services, [EXTENSION.to_owned(), PROXY.to_owned()], "one proxy and one extension service");
    assert_eq!(configs, mounted_configs(&new_leader, &[PROXY, EXTENSION]), "no config object beyond the ones mounted");
    assert_eq!(secrets.len(), 1, "one extension token: {secrets:?}");
    let proxy_tasks = docker(&new_leader, &["service", "ps", "-q", "--filter", "desired-state=running", PROXY]);
    assert_eq!(proxy_tasks.lines().count(), 1, "one proxy task");
    for host in ["a.ha.local", "b.ha.local"] {
        time_to_served(&proxy_addr, PORT, host, "interlock-app", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{host} still served"));
    }
    step(started, "no duplicate or lost object");

    // The active replica itself dies (its manager stays): Swarm restarts it on the leader's node
    // (the only one free of a replica), and it writes again within the bound.
    let filter = format!("label=com.docker.swarm.service.name={CORE}");
    let core = docker(&new_leader, &["ps", "-q", "--filter", &filter]);
    let killed = Instant::now();
    docker(&new_leader, &["kill", core.trim()]);
    let back = wait_for("a new active core on the leader", 3 * POLL, || {
        let now = docker(&new_leader, &["ps", "-q", "--filter", &filter]);
        (!now.trim().is_empty() && now.trim() != core.trim() && role_of(&new_leader).as_deref() == Some("active"))
            .then(|| killed.elapsed())
    });
    create_app(&new_leader, APP_C, "c.ha.local", &app_node).expect("create app c");
    let served = time_to_served(&proxy_addr, PORT, "c.ha.local", "interlock-app", POLL)
        .await
        .expect("app c served within a PollInterval of its creation");
    step(
        started,
        &format!(
            "FIGURES active core killed: a new one active {:.1} s later, a new route served {:.2} s after its creation",
            back.as_secs_f64(),
            served.as_secs_f64()
        ),
    );
    let (services, _, _) = owned(&new_leader);
    assert_eq!(services, [EXTENSION.to_owned(), PROXY.to_owned()], "one proxy and one extension service");
    step(started, "cleaning up");
    clean(&new_leader);
}
