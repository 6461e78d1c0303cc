//! The high-availability lab (`deploy/lab/swarm-lab.sh ha-up`: a swarm of three managers and a
//! worker of its own) as the tests that stop its engines see it: its nodes, the docker CLI against one node's
//! engine, a core's `/status` read inside its container, apps of a cluster, and what interlock
//! owns there. Shared by `tests/ha/failover.rs` and `tests/ha/faults.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

/// The label every object interlock creates carries, as a `--filter`.
pub const OWNED: &str = "label=com.docker.interlock.managed-by=interlock";
/// The overlay network the test apps are on.
pub const APPS_NETWORK: &str = "ha-apps";

/// A value from `/run/interlock-lab/ha-env`, or a failure that says how to get the lab.
pub fn ha_env(key: &str) -> String {
    let env = std::fs::read_to_string("/run/interlock-lab/ha-env").unwrap_or_else(|e| {
        panic!(
            "\n\nThe high-availability lab is not running (/run/interlock-lab/ha-env: {e}).\nStart it with `deploy/lab/swarm-lab.sh up && deploy/lab/swarm-lab.sh ha-up` (as root), or run `deploy/test.sh`.\n\n"
        )
    });
    super::env_value(&env, key).unwrap_or_else(|| panic!("no {key} in /run/interlock-lab/ha-env"))
}

/// The HA lab's node names: its managers, then its workers.
pub fn nodes() -> Vec<String> {
    ha_env("LAB_HA_NODES").split_whitespace().map(str::to_owned).collect()
}

/// Its three managers.
pub fn managers() -> Vec<String> {
    ha_env("LAB_HA_MANAGERS").split_whitespace().map(str::to_owned).collect()
}

/// Its workers.
pub fn workers() -> Vec<String> {
    ha_env("LAB_HA_WORKERS").split_whitespace().map(str::to_owned).collect()
}

/// `unix:///run/docker-NODE.sock`.
pub fn host_of(node: &str) -> String {
    ha_env(&format!("LAB_HOST_{}", node.replace('-', "_")))
}

/// The node's engine socket on the host.
pub fn socket_of(node: &str) -> String {
    host_of(node).trim_start_matches("unix://").to_owned()
}

pub fn addr_of(node: &str) -> String {
    ha_env(&format!("LAB_ADDR_{}", node.replace('-', "_")))
}

/// The docker CLI against `node`'s engine: its output, or its error text.
pub fn try_docker(node: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").arg("-H").arg(host_of(node)).args(args).output().expect("run the docker CLI");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// [`try_docker`], panicking on failure.
pub fn docker(node: &str, args: &[&str]) -> String {
    try_docker(node, args).unwrap_or_else(|e| panic!("docker -H {} {}: {e}", host_of(node), args.join(" ")))
}

/// `deploy/lab/swarm-lab.sh ARGS` (ha-stop, ha-start), which must succeed.
pub fn lab_script(args: &[&str]) {
    let status = Command::new("deploy/lab/swarm-lab.sh").args(args).status().expect("run swarm-lab.sh");
    assert!(status.success(), "deploy/lab/swarm-lab.sh {}", args.join(" "));
}

/// The Raft leader's hostname, as `node` sees it (`None`: no leader, or no answer).
pub fn leader_seen_by(node: &str) -> Option<String> {
    let out = try_docker(node, &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"]).ok()?;
    out.lines().find_map(|l| l.strip_suffix(" Leader")).map(str::to_owned)
}

/// The ID of the running container of `service` on `node`.
pub fn container_of(node: &str, service: &str) -> Option<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let ids = try_docker(node, &["ps", "-q", "--filter", &filter]).ok()?;
    ids.lines().next().map(str::to_owned)
}

/// `GET /status` of the core of service `service` running on `node` (inside its container's
/// network namespace: the core publishes no port), as JSON.
pub fn core_status(node: &str, service: &str) -> Option<serde_json::Value> {
    let id = container_of(node, service)?;
    let pid = try_docker(node, &["inspect", "-f", "{{.State.Pid}}", &id]).ok()?;
    let out = Command::new("nsenter")
        .args(["-t", pid.trim(), "-n", "curl", "-fsS", "--max-time", "3", "http://127.0.0.1:8080/status"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The `role` a replica's `/status` gives (`active`, `standby`).
pub fn role_of(node: &str, service: &str) -> Option<String> {
    core_status(node, service)?.get("role")?.as_str().map(str::to_owned)
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An app of service cluster `cluster`, pinned to `node`, serving busybox httpd's
/// "interlock-app" page for `host`; created through `on`'s engine.
pub fn create_app(on: &str, name: &str, host: &str, node: &str, cluster: &str) -> Result<String, String> {
    super::service::Create::new()
        .detach()
        .quiet()
        // The lab's images are local: asking a registry for their digest (the CLI's default)
        // only waits for a timeout, about 20 s on these nodes.
        .no_resolve_image()
        .name(name)
        .network(APPS_NETWORK)
        .constraint(&format!("node.hostname=={node}"))
        .label("com.docker.lb.hosts", host)
        .label("com.docker.lb.port", "80")
        .label("com.docker.lb.network", APPS_NETWORK)
        .label("com.docker.lb.service_cluster", cluster)
        .image("local/interlock-app:lab")
        .run_with(|args| try_docker(on, args))
}

/// Removes `services` (cores first: a running core would recreate what it owns), waits until
/// no container of `cores` runs on any node, then removes everything interlock owns.
pub fn clean(node: &str, cores: &[&str], services: &[&str]) {
    for service in services {
        let _ = try_docker(node, &["service", "rm", service]);
    }
    wait_for("the cores stopped", Duration::from_secs(60), || {
        nodes().iter().all(|n| cores.iter().all(|c| container_of(n, c).is_none())).then_some(())
    });
    for id in docker(node, &["service", "ls", "-q", "--filter", OWNED]).split_whitespace() {
        let _ = try_docker(node, &["service", "rm", id]);
    }
    wait_for("owned services gone", Duration::from_secs(60), || {
        docker(node, &["service", "ls", "-q", "--filter", OWNED]).trim().is_empty().then_some(())
    });
    for kind in ["config", "secret"] {
        for id in docker(node, &[kind, "ls", "-q", "--filter", OWNED]).split_whitespace() {
            let _ = try_docker(node, &[kind, "rm", id]);
        }
    }
}

/// Prints a step with the time since the test started (`--nocapture` shows them).
pub fn step(started: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Owned objects by kind: `(services by name, configs, secrets)`, sorted.
pub fn owned(node: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = docker(node, args).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    (
        names(&["service", "ls", "--filter", OWNED, "--format", "{{.Name}}"]),
        names(&["config", "ls", "--filter", OWNED, "--format", "{{.Name}}"]),
        names(&["secret", "ls", "--filter", OWNED, "--format", "{{.Name}}"]),
    )
}

/// The config objects `services` mount, sorted, without repeats.
pub fn mounted_configs(node: &str, services: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for name in services {
        let format = "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}";
        v.extend(docker(node, &["service", "inspect", "-f", format, name]).split_whitespace().map(str::to_owned));
    }
    v.sort();
    v.dedup();
    v
}

/// The TOML of one hitless nginx cluster `cluster` for the HA lab's tests: `top` (the core's own
/// keys), a `PollInterval`, the node label `LABEL = "lb"` declared on `lb_node` by
/// `[NodeLabels]` and the proxy placed by it, host-mode ports `port` (and `port + 400` for TLS),
/// the services `interlock-ext-CLUSTER` and `interlock-proxy-CLUSTER`.
pub fn hitless_cluster_toml(top: &str, poll: Duration, cluster: &str, label: &str, lb_node: &str, port: u16) -> String {
    format!(
        r#"ListenAddr = ":8080"
DockerURL = "unix:///var/run/docker.sock"
PollInterval = "{poll}s"
{top}

[NodeLabels."{lb_node}"]
  {label} = "lb"

[Extensions]
  [Extensions.{cluster}]
    Image = "local/interlock:lab"
    Args = ["extension"]
    ServiceName = "interlock-ext-{cluster}"
    ProxyImage = "local/interlock-proxy:lab"
    ProxyArgs = []
    ProxyServiceName = "interlock-proxy-{cluster}"
    ProxyConfigPath = "/etc/nginx/nginx.conf"
    ServiceCluster = "{cluster}"
    HitlessServiceUpdate = true
    ProxyConstraints = ["node.labels.{label}==lb"]
    PublishMode = "host"
    PublishedPort = {port}
    TargetPort = 80
    PublishedSSLPort = {tls}
    TargetSSLPort = 443
    [Extensions.{cluster}.Config]
      User = "nginx"
      PidPath = "/var/run/proxy.pid"
      WorkerProcesses = 1
      RlimitNoFile = 65535
      MaxConnections = 2048
"#,
        poll = poll.as_secs(),
        tls = port + 400
    )
}

/// Starts `returning`'s engine again (after `ha-stop`), waits until its replica of `core` stands
/// by while `active`'s writes, lets two PollIntervals pass (whatever the dead writer left is
/// collected), then checks a converged swarm: no write by the active core over a third.
pub async fn return_and_converge(returning: &str, active: &str, core: &str, poll: Duration) {
    lab_script(&["ha-start", returning]);
    wait_for("three cores again, the returned one standing by", Duration::from_secs(120), || {
        (role_of(returning, core).as_deref() == Some("standby") && role_of(active, core).as_deref() == Some("active"))
            .then_some(())
    });
    tokio::time::sleep(2 * poll + Duration::from_secs(1)).await;
    let writes_before =
        core_status(active, core).and_then(|s| s["writes"].as_u64()).expect("status of the active core");
    tokio::time::sleep(poll + Duration::from_secs(1)).await;
    let status = core_status(active, core).expect("status of the active core");
    assert_eq!(status["writes"].as_u64(), Some(writes_before), "a converged swarm gets no writes: {status:#}");
}
