//! Automatic HTTPS on the project's lab, against a real ACME server: Debian's `pebble` and
//! `pebble-challtestsrv` as Swarm services on the manager (`local/pebble:lab`, built by
//! `deploy/lab/swarm-lab.sh`; dnsrr, as the lab has no IPVS), challtestsrv answering every name
//! with lb-00's address, pebble validating HTTP-01 on the hitless proxy's published port there.
//!
//! The core runs as a service with `[ACME]` (`CACertificate`: the listener CA this test makes,
//! as a secret). Two services ask for certificates (`com.docker.lb.ssl_acme=true`): the chains
//! served over SNI verify against pebble's root (`/roots/0` on its management port). A tenant's
//! newer service asking for a certificate for a host it does not own (its owner asks for none)
//! gets nothing ordered. `RenewBefore` is longer than pebble's certificates live, so every
//! certificate is due at once: renewals follow one another, and TLS load on one host across at
//! least one renewal sees no failed request (the renewal is a hitless delivery, no roll).

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::acme::{challtestsrv_command, listener_certificates, pebble_config, pebble_start_script, tls_connector};
use support::{docker, docker_quiet, eventually, lab, node_addr, service};
use tokio_rustls::TlsConnector;

const CORE: &str = "interlock-acme";
const PEBBLE: &str = "acme-pebble";
const DNS: &str = "acme-challtestsrv";
const CA_NET: &str = "acme-ca";
const APP_NET: &str = "acme-apps";
const HTTP_PORT: u16 = 8099;
const TLS_PORT: u16 = 8459;
const HOST_A: &str = "a.acme.test";
const HOST_B: &str = "b.acme.test";
const HOST_C: &str = "c.acme.test";
const APPS: [&str; 4] = ["acme-a", "acme-b", "acme-c", "acme-tenant"];
const CA_SECRET: &str = "interlock-acme-test-ca";
const PEBBLE_CERT: &str = "interlock-acme-test-pebble-cert";
const PEBBLE_KEY: &str = "interlock-acme-test-pebble-key";

fn config_toml() -> String {
    format!(
        r#"ListenAddr = ":8080"
DockerURL = "unix:///var/run/docker.sock"
PollInterval = "3s"
EndpointOverride = "{CORE}:8080"

[Extensions]
  [Extensions.acme]
    Image = "local/interlock:lab"
    Args = ["-D", "extension"]
    ServiceName = "interlock-ext-acme"
    ProxyImage = "local/interlock-proxy:lab"
    ProxyArgs = []
    ProxyServiceName = "interlock-proxy-acme"
    ProxyConfigPath = "/etc/nginx/nginx.conf"
    ServiceCluster = "acme"
    HitlessServiceUpdate = true
    ProxyConstraints = ["node.hostname==lb-00"]
    PublishMode = "host"
    PublishedPort = {HTTP_PORT}
    TargetPort = 80
    PublishedSSLPort = {TLS_PORT}
    TargetSSLPort = 443
    [Extensions.acme.Config]
      User = "nginx"
      PidPath = "/var/run/proxy.pid"
      WorkerProcesses = 1
      RlimitNoFile = 65535
      MaxConnections = 2048

[ACME]
  DirectoryURL = "https://{PEBBLE}:14000/dir"
  Email = "ops@acme.test"
  CACertificate = "{CA_SECRET}"
  RenewBefore = "438000h"
"#
    )
}

/// Removes what this test makes and everything interlock owns. Never panics.
fn teardown() {
    docker_quiet(&["service", "rm", CORE]);
    std::thread::sleep(Duration::from_secs(3));
    for name in APPS.iter().chain(&[PEBBLE, DNS, "interlock-proxy-acme", "interlock-ext-acme"]) {
        docker_quiet(&["service", "rm", name]);
    }
    let owned = format!("label={}={}", reconcilers::ownership::LABEL_MANAGED_BY, reconcilers::ownership::MANAGED_BY);
    let ls = |kind: &str| {
        std::process::Command::new("docker")
            .args([kind, "ls", "-q", "--filter", &owned])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    std::thread::sleep(Duration::from_secs(5));
    for id in ls("config") {
        docker_quiet(&["config", "rm", &id]);
    }
    for id in ls("secret") {
        docker_quiet(&["secret", "rm", &id]);
    }
    for name in [CA_SECRET, PEBBLE_CERT, PEBBLE_KEY] {
        docker_quiet(&["secret", "rm", name]);
    }
    docker_quiet(&["config", "rm", "interlock-acme-test-config", "interlock-acme-test-pebble"]);
    for net in [CA_NET, APP_NET] {
        docker_quiet(&["network", "rm", net]);
    }
}

struct Deployment;

impl Drop for Deployment {
    fn drop(&mut self) {
        teardown();
    }
}

fn create_file(kind: &str, name: &str, data: &[u8]) {
    let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    docker_quiet(&[kind, "rm", name]);
    docker(&[kind, "create", name, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
}

fn app(name: &str, host: &str, acme: bool) {
    let mut create = service::Create::new()
        .quiet()
        .detach()
        .name(name)
        .network(APP_NET)
        .constraint("node.hostname==app-00")
        .label("com.docker.lb.hosts", host)
        .label("com.docker.lb.port", "80")
        .label("com.docker.lb.service_cluster", "acme");
    if acme {
        create = create.label("com.docker.lb.ssl_acme", "true");
    }
    create.image("local/interlock-app:lab").run_with(docker);
}

async fn deploy() -> Deployment {
    let api = lab().await;
    support::stop_demo_operator(&api).await;
    teardown();
    let deployment = Deployment;
    let lb = node_addr("lb-00");
    docker_quiet(&["network", "create", "-d", "overlay", "interlock"]);
    docker(&["network", "create", "-d", "overlay", "--attachable", CA_NET]);
    docker(&["network", "create", "-d", "overlay", APP_NET]);

    let (ca, cert, key) = listener_certificates(PEBBLE);
    create_file("secret", CA_SECRET, ca.as_bytes());
    create_file("secret", PEBBLE_CERT, cert.as_bytes());
    create_file("secret", PEBBLE_KEY, key.as_bytes());
    let pebble = pebble_config(PEBBLE_CERT, PEBBLE_KEY, HTTP_PORT, TLS_PORT);
    create_file("config", "interlock-acme-test-pebble", pebble.as_bytes());

    service::Create::new()
        .quiet()
        .detach()
        .name(DNS)
        .network(CA_NET)
        .endpoint_mode("dnsrr")
        .constraint("node.role==manager")
        .image("local/pebble:lab")
        .command(&challtestsrv_command(&lb).iter().map(String::as_str).collect::<Vec<_>>())
        .run_with(docker);
    let start = pebble_start_script(DNS);
    service::Create::new()
        .quiet()
        .detach()
        .name(PEBBLE)
        .network(CA_NET)
        .network("interlock")
        .endpoint_mode("dnsrr")
        .constraint("node.role==manager")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // Every renewal answers a challenge again: the whole path each time.
        .env("PEBBLE_AUTHZREUSE", "0")
        .secret(PEBBLE_CERT)
        .secret(PEBBLE_KEY)
        .config("src=interlock-acme-test-pebble,target=/pebble.json")
        .restart_delay("2s")
        .image("local/pebble:lab")
        .command(&["/bin/sh", "-c", &start])
        .run_with(docker);

    // The CA up before the core: an order the CA cannot answer backs off for a minute or more.
    eventually("pebble's root", Duration::from_secs(90), || async { pebble_root() }).await;
    create_file("config", "interlock-acme-test-config", config_toml().as_bytes());
    service::Create::new()
        .detach()
        .quiet()
        .name(CORE)
        .mount("type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock")
        .network("interlock")
        .constraint("node.role==manager")
        .config("src=interlock-acme-test-config,target=/config.toml")
        .secret(CA_SECRET)
        .image("local/interlock:lab")
        .command(&["-D", "run", "-c", "/config.toml"])
        .run_with(docker);
    deployment
}

/// The PID of the running container of `service` on the manager.
fn container_pid(service: &str) -> Option<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let id = docker(&["ps", "-q", "--filter", &filter]);
    let id = id.lines().next()?.trim().to_owned();
    Some(docker(&["inspect", "--format", "{{.State.Pid}}", &id]).trim().to_owned())
}

/// `curl` inside `service`'s network namespace.
fn curl_in(service: &str, args: &[&str]) -> Option<String> {
    let pid = container_pid(service)?;
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-n", "curl", "-s", "-m", "5"])
        .args(args)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// pebble's root (the issuer of the issuing intermediate), from its management port.
fn pebble_root() -> Option<String> {
    curl_in(PEBBLE, &["-k", "https://127.0.0.1:15000/roots/0"]).filter(|pem| pem.contains("BEGIN CERTIFICATE"))
}

/// One HTTPS request to `host` through lb-00 ([`support::acme::https_get`]).
async fn https_get(connector: &TlsConnector, host: &str) -> Result<(Vec<u8>, String), String> {
    support::acme::https_get(connector, &format!("{}:{TLS_PORT}", node_addr("lb-00")), host).await
}

/// The core's `/status`, from inside its network namespace.
fn core_status() -> String {
    curl_in(CORE, &["http://127.0.0.1:8080/status"]).unwrap_or_default()
}

fn acme_secrets(host: &str) -> Vec<String> {
    let filter = format!("label=com.docker.interlock.acme.host={host}");
    docker(&["secret", "ls", "--format", "{{.Name}}", "--filter", &filter]).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_ordered_served_and_renewed_without_a_failed_request() {
    let deployment = deploy().await;
    let started = Instant::now();
    app("acme-a", HOST_A, true);
    app("acme-b", HOST_B, true);
    app("acme-c", HOST_C, false);
    // The tenant comes later: c.acme.test belongs to acme-c, which asks for no certificate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app("acme-tenant", HOST_C, true);

    let root = eventually("pebble's root", Duration::from_secs(60), || async { pebble_root() }).await;
    let connector = tls_connector(&root);
    let mut first = std::collections::BTreeMap::new();
    for host in [HOST_A, HOST_B] {
        let (leaf, _) =
            eventually(&format!("{host} served with a chain pebble issued"), Duration::from_secs(240), || {
                let connector = connector.clone();
                async move { https_get(&connector, host).await.ok() }
            })
            .await;
        println!("{host}: served with pebble's chain after {:.1} s", started.elapsed().as_secs_f64());
        first.insert(host, leaf);
    }
    // The tenant's ssl_acme on a host it does not own ordered nothing.
    assert!(
        acme_secrets(HOST_C).is_empty(),
        "a certificate for {HOST_C}: {:?}\n{}",
        acme_secrets(HOST_C),
        core_status()
    );
    assert!(https_get(&connector, HOST_C).await.is_err(), "{HOST_C} has no certificate pebble issued");
    let status = core_status();
    assert!(status.contains(HOST_A) && status.contains("days_left"), "/status per host: {status}");

    // Renewals under load: TLS requests to a.acme.test until at least two new leaves were served.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let leaves = Arc::new(std::sync::Mutex::new(BTreeSet::from([first[HOST_A].clone()])));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, leaves, failures, connector) =
            (stop.clone(), ok.clone(), failed.clone(), leaves.clone(), failures.clone(), connector.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match https_get(&connector, HOST_A).await {
                    Ok((leaf, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        leaves.lock().unwrap().insert(leaf);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let load_started = Instant::now();
    let renewed = tokio::time::timeout(Duration::from_secs(300), async {
        while leaves.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .is_ok();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "renewal under load: {} leaves served for {HOST_A} in {:.1} s, {ok} requests ok, {failed} failed",
        leaves.lock().unwrap().len(),
        load_started.elapsed().as_secs_f64()
    );
    assert!(renewed, "no two renewals within 300 s\n{}", core_status());
    assert_eq!(failed, 0, "failed requests during renewals: {:?}", failures.lock().unwrap());
    drop(deployment);
}
