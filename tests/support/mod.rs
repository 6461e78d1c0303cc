//! Shared by the test binaries (tests/README.md): reaching the lab, plain HTTP requests through
//! its proxies, and the docker CLI for what the operator deliberately does not do (node labels,
//! app setup; services are created with [`service::Create`]). The binaries in `tests/lab/` and
//! `tests/ha/` include it with `#[path = "../support/mod.rs"] mod support;`.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod acme;
pub mod ha;
pub mod load;
pub mod metrics;
pub mod relay;
pub mod service;
pub mod walkthrough;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interlock::docker::DockerClient;
use reconcilers::config::DockerUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The lab's manager, or a failure that says how to get one. Never a silent pass.
pub async fn lab() -> DockerClient {
    let host = std::env::var("INTERLOCK_LAB_DOCKER_HOST")
        .ok()
        .or_else(|| lab_env("LAB_MANAGER_HOST"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let url = DockerUrl::parse(&host).unwrap_or_else(|e| panic!("bad lab address {host}: {e}"));
    let client = DockerClient::connect(Some(&url), &Default::default()).expect("connect to the lab");
    if let Err(e) = client.require_manager().await {
        panic!(
            "\n\nThe Swarm lab is not running ({e}).\nStart it with `deploy/lab/swarm-lab.sh up` (as root), or run everything with `deploy/test.sh`.\n\n"
        );
    }
    client
}

/// Creates interlock's core as a Swarm service named `name`, as the walk-through runs it: on a
/// manager, with its Docker socket, on the `interlock` network, its TOML from the config object
/// `config`, `interlock -D run -c /config.toml` (the lab's image).
pub fn create_core_service(name: &str, config: &str) {
    service::Create::new()
        .detach()
        .quiet()
        .name(name)
        .mount("type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock")
        .network("interlock")
        .constraint("node.role==manager")
        .config(&format!("src={config},target=/config.toml"))
        .image("local/interlock:lab")
        .command(&["-D", "run", "-c", "/config.toml"])
        .run_with(docker);
}

/// Removes the operator services other runs may have left: `interlock` (the walk-through's
/// `docker service create`), `interlock-hitless` (the hitless test) and `interlock_core` (the
/// stack's core: `deploy/demo.sh`, `tests/lab/stack.rs`): a second operator in the lab would write the
/// same objects as the one under test, and remove what its own TOML does not name.
pub async fn stop_demo_operator(api: &DockerClient) {
    let mut services = Vec::new();
    for name in ["interlock", "interlock-hitless", "interlock_core"] {
        services.extend(api.inspect_service(name).await.expect("inspect service"));
    }
    for s in &services {
        docker_quiet(&["service", "rm", &s.id]);
    }
    // Its container keeps reconciling until it has stopped, after the service is gone. It runs
    // on a manager, which is the engine the docker CLI talks to here.
    for s in &services {
        let filter = format!("label=com.docker.swarm.service.id={}", s.id);
        eventually("the demo's operator stopped", Duration::from_secs(30), || async {
            docker(&["ps", "-q", "--filter", &filter]).trim().is_empty().then_some(())
        })
        .await;
    }
}

/// A value from `/run/interlock-lab/env`.
pub fn lab_env(key: &str) -> Option<String> {
    env_value(&std::fs::read_to_string("/run/interlock-lab/env").ok()?, key)
}

/// `KEY=value` (quotes stripped) from the text of an env file `swarm-lab.sh` writes.
pub fn env_value(env: &str, key: &str) -> Option<String> {
    env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(|v| v.trim_matches('"').to_owned())
}

/// A node's address on the lab bridge.
pub fn node_addr(node: &str) -> String {
    lab_env(&format!("LAB_ADDR_{}", node.replace('-', "_")))
        .unwrap_or_else(|| panic!("no address for lab node {node} in /run/interlock-lab/env"))
}

/// An HTTP/1.1 answer: status, headers (lower-cased names) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `GET /` on `addr:port` with `Host: host`; `None` if nothing answered.
pub async fn get(addr: &str, port: u16, host: &str) -> Option<Answer> {
    request(addr, port, host, "/", &[]).await
}

/// `GET path` with `Host: host` and extra headers; `None` if nothing answered.
pub async fn request(addr: &str, port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((addr, port)).await.ok()?;
        let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Answer { status, headers, body: body.to_owned() })
    };
    tokio::time::timeout(Duration::from_secs(3), exchange).await.ok().flatten()
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the docker CLI against the lab manager; panics with its output on failure.
pub fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker").args(args).output().expect("run the docker CLI");
    assert!(
        output.status.success(),
        "docker {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the docker CLI, ignoring failure (clean-up of what may not exist).
pub fn docker_quiet(args: &[&str]) {
    let _ = std::process::Command::new("docker").args(args).output();
}

/// Runs the interlock binary built for these tests.
pub fn interlock(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_interlock"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run interlock");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Removes `apps` (services by name) and waits until they are gone: their configs and secrets
/// stay in use until then.
pub fn remove_services(apps: &[&str]) {
    for app in apps {
        docker_quiet(&["service", "rm", app]);
    }
    for _ in 0..50 {
        let left = docker(&["service", "ls", "--format", "{{.Name}}"]);
        if left.lines().all(|name| !apps.contains(&name)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A lab without the demo's operator, `apps`, or anything interlock owns, with the operator
/// network and `networks` in place: where a feature test starts.
pub async fn fresh_lab(api: &DockerClient, apps: &[&str], networks: &[&str]) {
    stop_demo_operator(api).await;
    remove_services(apps);
    remove_owned_services(api).await;
    for network in std::iter::once(&"interlock").chain(networks) {
        docker_quiet(&["network", "create", "-d", "overlay", network]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Removes every service interlock owns.
pub async fn remove_owned_services(api: &DockerClient) {
    let owned = format!("{}={}", reconcilers::ownership::LABEL_MANAGED_BY, reconcilers::ownership::MANAGED_BY);
    for s in api.list_services(&owned).await.expect("list services") {
        docker_quiet(&["service", "rm", &s.id]);
    }
}

/// A self-signed certificate for `host` in secrets NAME.crt / NAME.key; returns the cert file.
pub fn tls_secrets(dir: &Path, name: &str, host: &str) -> PathBuf {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={host}"), "-addext", &format!("subjectAltName=DNS:{host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (secret, file) in [(format!("{name}.crt"), &cert), (format!("{name}.key"), &key)] {
        docker_quiet(&["secret", "rm", &secret]);
        docker(&["secret", "create", &secret, file.to_str().unwrap()]);
    }
    cert
}
