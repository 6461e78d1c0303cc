//! An ACME order survives the loss of the core that started it, on the high-availability lab
//! (`deploy/lab/swarm-lab.sh ha-up`; `deploy/test.sh` runs this test after the failover and
//! fault tests, beside the main lab's).
//!
//! pebble and pebble-challtestsrv run as services on the HA lab's worker (challtestsrv answers
//! every name with the worker's address), with pebble's validation delayed by a random few
//! seconds (`PEBBLE_VA_SLEEPTIME`), as a real CA's can be. interlock is deployed as the README
//! says, `docker stack deploy` with three replicas, plus an override file giving the core the
//! `CACertificate` secret (as docs/acme.md tells a user of a private CA); its hitless proxy runs
//! on the worker. An app asks for a certificate (`com.docker.lb.ssl_acme=true`); while the
//! active core's `/status` shows the order under way (talking to the CA, answering or
//! validating), the Raft leader's engine is killed, the active core with it. Proven:
//! - the new leader's core takes over and the host is served with a chain pebble issued;
//! - the new active continued the dead one's account: one account object (and its sealed copy)
//!   in the swarm, not two;
//! - no certificate is left over: the host has exactly the certificate it serves;
//! - when the dead manager comes back, its core stands by and a pass writes nothing.
//!
//! Alone: `deploy/lab/swarm-lab.sh up && deploy/lab/swarm-lab.sh ha-up`, then
//! `cargo test --features lab --test ha_acme -- --ignored --nocapture`.

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reconcilers::ownership::{ACME_ACCOUNT, ACME_CERTIFICATE, LABEL_ACME, LABEL_ACME_HOST};
use support::acme::{
    challtestsrv_command, https_get, listener_certificates, pebble_config, pebble_start_script, tls_connector,
};
use support::ha::{self, addr_of, docker, host_of, lab_script, leader_seen_by, step, try_docker, wait_for};
use support::load::time_to_served;

const STACK: &str = "interlock";
const CORE: &str = "interlock_core";
const CLUSTER: &str = "acmeha";
const PORT: u16 = 8091;
/// `hitless_cluster_toml` publishes TLS on `PORT + 400`.
const TLS_PORT: u16 = PORT + 400;
const POLL: Duration = Duration::from_secs(15);
const PEBBLE: &str = "acme-pebble";
const DNS: &str = "acme-challtestsrv";
const CA_NET: &str = "acme-ca";
const CA_SECRET: &str = "interlock-acme-ha-ca";
const PEBBLE_CERT: &str = "interlock-acme-ha-pebble-cert";
const PEBBLE_KEY: &str = "interlock-acme-ha-pebble-key";
const PEBBLE_CONFIG: &str = "interlock-acme-ha-pebble";
const CONFIG: &str = "target/ha-acme.toml";
const OVERRIDE: &str = "target/ha-acme-stack.yml";
/// An app without ACME, served first.
const PLAIN: (&str, &str) = ("acme-ha-plain", "plain.acmeha.test");
/// Apps tried one after another until one's order is caught under way.
const APPS: [(&str, &str); 3] =
    [("acme-ha-a", "a.acmeha.test"), ("acme-ha-b", "b.acmeha.test"), ("acme-ha-c", "c.acmeha.test")];

fn role_of(node: &str) -> Option<String> {
    ha::role_of(node, CORE)
}

/// The state of `host`'s order in the `/status` of the core on `node`.
fn order_state(node: &str, host: &str) -> Option<String> {
    ha::core_status(node, CORE)?.get("acme")?.get(host)?.get("state")?.as_str().map(str::to_owned)
}

/// Objects of `kind` (`secret`, `config`) with ACME label `what`, and host `host` if given.
fn acme_objects(node: &str, kind: &str, what: &str, host: Option<&str>) -> Vec<String> {
    let mut args = vec![kind.to_owned(), "ls".into(), "--format".into(), "{{.Name}}".into()];
    args.extend(["--filter".into(), format!("label={LABEL_ACME}={what}")]);
    if let Some(host) = host {
        args.extend(["--filter".into(), format!("label={LABEL_ACME_HOST}={host}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut names: Vec<String> = docker(node, &args).lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// A file `name` of `kind` (`secret`, `config`) with `data`, replacing any earlier one.
fn create_file(node: &str, kind: &str, name: &str, data: &[u8]) {
    let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = try_docker(node, &[kind, "rm", name]);
    docker(node, &[kind, "create", name, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
}

/// Whatever an earlier run left: the stack, the apps, the CA, everything interlock owns.
fn clean(node: &str) {
    let _ = try_docker(node, &["stack", "rm", STACK]);
    let mut services: Vec<&str> = APPS.iter().map(|(name, _)| *name).collect();
    services.push(PLAIN.0);
    services.extend([PEBBLE, DNS]);
    ha::clean(node, &[CORE], &services);
    for name in [CA_SECRET, PEBBLE_CERT, PEBBLE_KEY] {
        let _ = try_docker(node, &["secret", "rm", name]);
    }
    let _ = try_docker(node, &["config", "rm", PEBBLE_CONFIG]);
    // Its tasks gone, the network goes too (retried: Swarm frees it a moment after).
    wait_for("the CA's network removed", Duration::from_secs(30), || {
        let gone = try_docker(node, &["network", "inspect", CA_NET]).is_err();
        (gone || try_docker(node, &["network", "rm", CA_NET]).is_ok()).then_some(())
    });
}

/// pebble's root (the issuer of its issuing intermediate), from its management port, read in
/// its container's network namespace on `worker`.
fn pebble_root(worker: &str) -> Option<String> {
    let id = ha::container_of(worker, PEBBLE)?;
    let pid = try_docker(worker, &["inspect", "-f", "{{.State.Pid}}", &id]).ok()?;
    let out = Command::new("nsenter")
        .args(["-t", pid.trim(), "-n", "curl", "-sk", "-m", "5", "https://127.0.0.1:15000/roots/0"])
        .output()
        .ok()?;
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && pem.contains("BEGIN CERTIFICATE")).then_some(pem)
}

/// pebble and challtestsrv on `worker`, every name resolving to it; validation delayed by up to
/// 10 s, so an order lasts long enough to be caught under way.
fn start_ca(leader: &str, worker: &str) {
    let _ = try_docker(leader, &["network", "create", "-d", "overlay", "--attachable", CA_NET]);
    let (ca, cert, key) = listener_certificates(PEBBLE);
    create_file(leader, "secret", CA_SECRET, ca.as_bytes());
    create_file(leader, "secret", PEBBLE_CERT, cert.as_bytes());
    create_file(leader, "secret", PEBBLE_KEY, key.as_bytes());
    let pebble = pebble_config(PEBBLE_CERT, PEBBLE_KEY, PORT, TLS_PORT);
    create_file(leader, "config", PEBBLE_CONFIG, pebble.as_bytes());
    let on_worker = format!("node.hostname=={worker}");
    support::service::Create::new()
        .quiet()
        .detach()
        .no_resolve_image()
        .name(DNS)
        .network(CA_NET)
        .endpoint_mode("dnsrr")
        .constraint(&on_worker)
        .image("local/pebble:lab")
        .command(&challtestsrv_command(&addr_of(worker)).iter().map(String::as_str).collect::<Vec<_>>())
        .run_with(|args| docker(leader, args));
    let start = pebble_start_script(DNS);
    support::service::Create::new()
        .quiet()
        .detach()
        .no_resolve_image()
        .name(PEBBLE)
        .network(CA_NET)
        .network("interlock")
        .endpoint_mode("dnsrr")
        .constraint(&on_worker)
        .env("PEBBLE_VA_SLEEPTIME", "10")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .secret(PEBBLE_CERT)
        .secret(PEBBLE_KEY)
        .config(&format!("src={PEBBLE_CONFIG},target=/pebble.json"))
        .restart_delay("2s")
        .image("local/pebble:lab")
        .command(&["/bin/sh", "-c", &start])
        .run_with(|args| docker(leader, args));
}

/// The TOML (one hitless cluster whose proxy is on `worker`, `[ACME]` trusting the test's CA)
/// and the stack override mounting that CA as a secret, as docs/acme.md says.
fn write_config(worker: &str) -> (PathBuf, PathBuf) {
    let mut toml = ha::hitless_cluster_toml("", POLL, CLUSTER, "acme-role", worker, PORT);
    toml.push_str(&format!(
        r#"
[ACME]
  DirectoryURL = "https://{PEBBLE}:14000/dir"
  Email = "ops@acmeha.test"
  CACertificate = "{CA_SECRET}"
"#
    ));
    let stack_override = format!(
        r#"version: "{version}"
services:
  core:
    secrets:
      - source: acme_ca
        target: {CA_SECRET}
secrets:
  acme_ca:
    external: true
    name: {CA_SECRET}
"#,
        version = stack_file_version()
    );
    std::fs::create_dir_all("target").unwrap();
    std::fs::write(CONFIG, toml).unwrap();
    std::fs::write(OVERRIDE, stack_override).unwrap();
    (std::fs::canonicalize(CONFIG).unwrap(), std::fs::canonicalize(OVERRIDE).unwrap())
}

/// The compose version `deploy/stack.yml` declares: an override must declare the same.
fn stack_file_version() -> String {
    let stack = std::fs::read_to_string("deploy/stack.yml").expect("deploy/stack.yml");
    let line = stack.lines().find_map(|l| l.strip_prefix("version:")).expect("a version line in deploy/stack.yml");
    line.trim().trim_matches(['"', '\'']).to_owned()
}

fn stack_deploy(node: &str, config: &PathBuf, stack_override: &PathBuf) {
    let out = Command::new("docker")
        .args(["-H", &host_of(node), "stack", "deploy", "--resolve-image", "never", "-c", "deploy/stack.yml"])
        .arg("-c")
        .arg(stack_override)
        .arg(STACK)
        .env("INTERLOCK_CONFIG", config)
        .env("INTERLOCK_CONFIG_VERSION", "ha-acme")
        .env("INTERLOCK_REPLICAS", "3")
        .output()
        .expect("run the docker CLI");
    assert!(out.status.success(), "docker stack deploy: {}", String::from_utf8_lossy(&out.stderr));
}

/// An app of the cluster on `worker` for `host`, asking for a certificate if `acme`.
fn create_app(on: &str, name: &str, host: &str, worker: &str, acme: bool) {
    let app = support::service::Create::new()
        .detach()
        .quiet()
        .no_resolve_image()
        .name(name)
        .network(ha::APPS_NETWORK)
        .constraint(&format!("node.hostname=={worker}"))
        .label("com.docker.lb.hosts", host)
        .label("com.docker.lb.port", "80")
        .label("com.docker.lb.network", ha::APPS_NETWORK)
        .label("com.docker.lb.service_cluster", CLUSTER);
    let app = if acme { app.label("com.docker.lb.ssl_acme", "true") } else { app };
    app.image("local/interlock-app:lab").run_with(|args| docker(on, args));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "on the HA lab, beside the main lab's tests: deploy/test.sh; alone: cargo test --features lab --test ha_acme -- --ignored --nocapture"]
async fn an_order_survives_the_loss_of_the_core_that_started_it() {
    let started = Instant::now();
    let managers = ha::managers();
    let worker = ha::workers().first().cloned().expect("the HA lab has a worker");
    let leader = wait_for("a Raft leader", Duration::from_secs(60), || leader_seen_by(&managers[0]));
    let others: Vec<String> = managers.iter().filter(|n| **n != leader).cloned().collect();
    step(started, &format!("leader {leader}; CA, proxy and apps on {worker}"));
    clean(&leader);
    for n in ha::nodes() {
        let _ = try_docker(&leader, &["node", "update", "--label-rm", "acme-role", &n]);
    }
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", "--attachable", "interlock"]);
    let _ = try_docker(&leader, &["network", "create", "-d", "overlay", ha::APPS_NETWORK]);
    start_ca(&leader, &worker);
    let root = wait_for("pebble's root", Duration::from_secs(90), || pebble_root(&worker));
    let connector = tls_connector(&root);

    step(started, "docker stack deploy, three replicas, the CA's secret in an override file");
    let (config, stack_override) = write_config(&worker);
    stack_deploy(&leader, &config, &stack_override);
    wait_for("the leader's core active, the others standby", Duration::from_secs(120), || {
        let want = |n: &String| Some(if *n == leader { "active" } else { "standby" }.to_owned());
        managers.iter().all(|n| role_of(n) == want(n)).then_some(())
    });

    // A first app without ACME: the proxy joins the apps' network (a new task, stop-first on the
    // one node it may run on) before any order. A manager killed during that roll can leave the
    // new task pending (Swarm's scheduler after an election, moby/moby#36699; the core then
    // reschedules it, docs/high-availability.md): not what this test is about.
    create_app(&leader, PLAIN.0, PLAIN.1, &worker, false);
    time_to_served(&addr_of(&worker), PORT, PLAIN.1, "interlock-app", Duration::from_secs(120))
        .await
        .expect("the first app served through the proxy");
    step(started, &format!("{} served", PLAIN.1));

    // An app asks; its order is caught under way (or, if pebble was quick, the next app's).
    let mut caught = None;
    for (name, host) in APPS {
        create_app(&leader, name, host, &worker, true);
        let state = wait_for(&format!("{host}'s order under way or done"), Duration::from_secs(120), || {
            order_state(&leader, host)
                .filter(|s| ["ordering", "answering", "validating", "issued"].contains(&s.as_str()))
        });
        step(started, &format!("{host}: {state}"));
        if state != "issued" {
            caught = Some(host);
            break;
        }
    }
    let host = caught.expect("no order caught under way in three tries (each validation waits 0 to 9 s)");
    let accounts_before = acme_objects(&leader, "secret", ACME_ACCOUNT, None);

    step(started, &format!("killing {leader}'s engine, {host}'s order under way"));
    let killed = Instant::now();
    lab_script(&["ha-stop", &leader, "--kill"]);
    let (new_leader, elected) = wait_for("a new Raft leader", Duration::from_secs(60), || {
        others.iter().find_map(|n| leader_seen_by(n).filter(|l| *l != leader)).map(|l| (l, killed.elapsed()))
    });
    let active = wait_for("the new leader's core active", (3 * POLL).saturating_sub(killed.elapsed()), || {
        (role_of(&new_leader).as_deref() == Some("active")).then(|| killed.elapsed())
    });
    step(
        started,
        &format!(
            "{new_leader} leads {:.1} s, its core active {:.1} s after the kill",
            elected.as_secs_f64(),
            active.as_secs_f64()
        ),
    );
    let addr = format!("{}:{TLS_PORT}", addr_of(&worker));
    let deadline = Instant::now() + Duration::from_secs(180);
    let served = loop {
        if https_get(&connector, &addr, host).await.is_ok() {
            break killed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{host} not served with pebble's chain within 180 s of the kill; the new active's /status: {:#}",
            ha::core_status(&new_leader, CORE).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    step(
        started,
        &format!(
            "FIGURES ACME failover: leader elected {:.1} s, standby active {:.1} s, {host} served with pebble's chain {:.1} s after the kill",
            elected.as_secs_f64(),
            active.as_secs_f64(),
            served.as_secs_f64()
        ),
    );

    // The same account, continued: one account secret, one sealed copy, as before the kill.
    let accounts = acme_objects(&new_leader, "secret", ACME_ACCOUNT, None);
    assert_eq!(accounts.len(), 1, "one ACME account: {accounts:?}");
    if !accounts_before.is_empty() {
        assert_eq!(accounts, accounts_before, "the new active continued the dead one's account");
    }
    assert_eq!(acme_objects(&new_leader, "config", ACME_ACCOUNT, None).len(), 1, "one sealed account");
    // Nothing left over from the order the dead core started: the host's one certificate.
    let certificates = wait_for("one certificate for the host", 2 * POLL, || {
        let c = acme_objects(&new_leader, "secret", ACME_CERTIFICATE, Some(host));
        (c.len() == 1).then_some(c)
    });
    step(started, &format!("{host}: certificate {certificates:?}, account {accounts:?}"));

    step(started, &format!("starting {leader}'s engine again"));
    ha::return_and_converge(&leader, &new_leader, CORE, POLL).await;
    assert!(https_get(&connector, &addr, host).await.is_ok(), "{host} still served");
    step(started, "cleaning up");
    clean(&new_leader);
}
