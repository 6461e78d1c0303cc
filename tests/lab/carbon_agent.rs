//! Statistics from every node in a real carbon-cache, on the project's lab: `interlock agent`
//! (the `carbon` plug-in's per-node agent) as a global service, and Debian's carbon-cache
//! (`local/carbon:lab`) as a service on the manager, both on an overlay network.
//!
//! Asserted, reading carbon-cache's whisper files back with `whisper-fetch` (in its container):
//! - Interlock 0.3's series, every one of the 16 keys, for app containers on two different nodes
//!   (app-00 and lb-00), under `PREFIX.containers.nodes.<node>.<container>.`, with plausible
//!   values (CPU time, a memory limit, traffic);
//! - the image filter: a container whose image it does not match (on app-00 beside a matching
//!   one) has no series;
//! - proxy tasks' counters: an nginx (`stub_status`) and an HAProxy (stats CSV, with credentials)
//!   task, each read inside its container, `requests` growing;
//! - a Carbon outage of 30 s (carbon-cache scaled to 0, then back as a new task, whose whisper
//!   files start empty): the agents kept reading meanwhile (points stamped inside the outage,
//!   buffered and delivered once Carbon is back) and sending resumes (points stamped after it).
//!
//! Everything the test creates is named `cb-*` (and the prefix `cbtest.stats`) and removed at the
//! end, also when an assertion fails.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{docker, docker_quiet, eventually, lab, service};

const NET: &str = "cb-net";
const CARBON: &str = "cb-carbon";
const AGENT: &str = "cb-agent";
/// Measured: the app image, on app-00 and on lb-00.
const APP_A: (&str, &str) = ("cb-app-a", "app-00");
const APP_B: (&str, &str) = ("cb-app-b", "lb-00");
/// Not measured (the filter excludes its image), on app-00 beside APP_A.
const OTHER: (&str, &str) = ("cb-other", "app-00");
const NGINX: (&str, &str) = ("cb-nginx", "lb-01");
const HAPROXY: (&str, &str) = ("cb-haproxy", "lb-00");
const NGINX_CONF: &str = "cb-nginx-conf";
const HAPROXY_CONF: &str = "cb-haproxy-conf";

const CARBON_IMAGE: &str = "local/carbon:lab";
const AGENT_IMAGE: &str = "local/interlock:lab";
const APP_IMAGE: &str = "local/interlock-app:lab";
const PROXY_IMAGE: &str = "local/interlock-proxy:lab";

const STATS_PREFIX: &str = "cbtest.stats";
const FILTER: &str = "interlock-app";
const INTERVAL_S: u64 = 2;
const WHISPER: &str = "/var/lib/graphite/whisper";
const OUTAGE: Duration = Duration::from_secs(30);

/// 0.3's keys, as whisper paths below a container's directory.
const KEYS: [&str; 16] = [
    "cpu/totalUsage",
    "cpu/usageInKernelmode",
    "cpu/usageInUsermode",
    "memory/usage",
    "memory/maxUsage",
    "memory/failcnt",
    "memory/limit",
    "memory/percent",
    "network/rxBytes",
    "network/rxPackets",
    "network/rxErrors",
    "network/rxDropped",
    "network/txBytes",
    "network/txPackets",
    "network/txErrors",
    "network/txDropped",
];

const NGINX_CONFIG: &str = "events {}
http {
    access_log off;
    server {
        listen 80 default_server;
        location /nginx_status { stub_status on; }
        location / { return 200 \"cb\\n\"; }
    }
}
";

const HAPROXY_CONFIG: &str = "global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend http-default
    bind *:80
    stats enable
    stats uri /haproxy?stats
    stats auth admin:cb-secret
";

/// Removes everything the test creates (before it starts and when it ends, even on failure).
struct Cleanup;

impl Cleanup {
    fn run() {
        for service in [AGENT, CARBON, APP_A.0, APP_B.0, OTHER.0, NGINX.0, HAPROXY.0] {
            docker_quiet(&["service", "rm", service]);
        }
        // Configs and the network stay in use until the tasks are gone.
        for _ in 0..100 {
            let left = docker(&["service", "ls", "--format", "{{.Name}}"]);
            if !left.lines().any(|n| n.starts_with("cb-")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for _ in 0..50 {
            docker_quiet(&["config", "rm", NGINX_CONF, HAPROXY_CONF]);
            docker_quiet(&["network", "rm", NET]);
            let networks = docker(&["network", "ls", "--format", "{{.Name}}"]);
            if !networks.lines().any(|n| n == NET) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        Cleanup::run();
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The running carbon-cache container's ID (on the manager, which the docker CLI talks to).
fn carbon_container() -> Option<String> {
    let filter = format!("label=com.docker.swarm.service.name={CARBON}");
    let out = docker(&["ps", "-q", "--filter", &filter, "--filter", "status=running"]);
    out.lines().next().map(str::to_owned)
}

/// Every whisper file under the test's prefix, relative to it (`containers/nodes/...`).
fn whisper_files(carbon: &str) -> Vec<String> {
    let root = format!("{WHISPER}/{}", STATS_PREFIX.replace('.', "/"));
    let output = std::process::Command::new("docker")
        .args(["exec", carbon, "find", &root, "-name", "*.wsp"])
        .output()
        .expect("docker exec find");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{root}/")))
        .map(str::to_owned)
        .collect()
}

/// The points of one series since `from` (Unix seconds): timestamp → value, empty slots left out.
fn fetch(carbon: &str, relative: &str, from: u64) -> BTreeMap<u64, f64> {
    try_fetch(carbon, relative, from).unwrap_or_else(|| panic!("{relative}: no whisper file"))
}

/// [`fetch`], or `None` while the series has no file yet: after Carbon's restart each node's
/// agent creates its files with its first send, and the nodes do not send at the same moment.
fn try_fetch(carbon: &str, relative: &str, from: u64) -> Option<BTreeMap<u64, f64>> {
    let path = format!("{WHISPER}/{}/{relative}", STATS_PREFIX.replace('.', "/"));
    let output = std::process::Command::new("docker")
        .args(["exec", carbon, "whisper-fetch", &format!("--from={from}"), &path])
        .output()
        .expect("run the docker CLI");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("No such file"), "whisper-fetch {path}: {stderr}");
        return None;
    }
    let out = String::from_utf8_lossy(&output.stdout);
    Some(
        out.lines()
            .filter_map(|l| {
                let (ts, value) = l.split_once(char::is_whitespace)?;
                Some((ts.trim().parse().ok()?, value.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// The directory (relative to the prefix) holding the series of the one container of `service`
/// on `node`, under `kind` (`containers/nodes` or `proxies`), once all of `keys` have files.
async fn series_dir(kind: &str, (service, node): (&str, &str), keys: &[&str]) -> (String, String) {
    let what = format!("{kind} series of {service} on {node}");
    eventually(&what, Duration::from_secs(60), || async {
        let carbon = carbon_container()?;
        let files = whisper_files(&carbon);
        // Task containers are `SERVICE.SLOT.TASK`: one component `SERVICE_SLOT_TASK`.
        let start = format!("{kind}/{node}/{service}_1_");
        let dir = files.iter().find_map(|f| {
            let rest = f.strip_prefix(&start)?;
            Some(format!("{start}{}", rest.split('/').next()?))
        })?;
        keys.iter().all(|k| files.contains(&format!("{dir}/{k}.wsp"))).then_some((carbon, dir))
    })
    .await
}

/// `docker service create --detach --quiet`, the rest to be added.
fn create() -> service::Create {
    service::Create::new().detach().quiet()
}

#[tokio::test]
async fn statistics_from_every_node_reach_carbon_and_survive_its_outage() {
    let _api = lab().await;
    let started = now();
    Cleanup::run();
    let _cleanup = Cleanup;

    docker(&["network", "create", "-d", "overlay", "--attachable", NET]);
    // Carbon on the manager, reached by its task addresses (dnsrr: the lab has no IPVS).
    create()
        .name(CARBON)
        .network(NET)
        .endpoint_mode("dnsrr")
        .constraint("node.role==manager")
        .image(CARBON_IMAGE)
        .run_with(docker);
    for (name, node) in [APP_A, APP_B] {
        create()
            .name(name)
            .network(NET)
            .constraint(&format!("node.hostname=={node}"))
            .image(APP_IMAGE)
            .run_with(docker);
    }
    create()
        .name(OTHER.0)
        .network(NET)
        .constraint(&format!("node.hostname=={}", OTHER.1))
        .stop_signal("SIGKILL")
        .image(PROXY_IMAGE)
        .command(&["sleep", "infinity"])
        .run_with(docker);
    let config_file = |name: &str, text: &str| {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        docker(&["config", "create", name, path.to_str().unwrap()]);
        std::fs::remove_file(&path).unwrap();
    };
    config_file(NGINX_CONF, NGINX_CONFIG);
    config_file(HAPROXY_CONF, HAPROXY_CONFIG);
    create()
        .name(NGINX.0)
        .network(NET)
        .constraint(&format!("node.hostname=={}", NGINX.1))
        .config(&format!("source={NGINX_CONF},target=/etc/cb/nginx.conf"))
        .image(PROXY_IMAGE)
        .command(&["nginx", "-c", "/etc/cb/nginx.conf", "-g", "daemon off;"])
        .run_with(docker);
    create()
        .name(HAPROXY.0)
        .network(NET)
        .constraint(&format!("node.hostname=={}", HAPROXY.1))
        .config(&format!("source={HAPROXY_CONF},target=/etc/cb/haproxy.cfg"))
        .stop_signal("SIGTERM")
        .image(PROXY_IMAGE)
        .command(&["haproxy", "-W", "-db", "-f", "/etc/cb/haproxy.cfg"])
        .run_with(docker);
    // The agent on every node, with that node's engine: what the core creates for the plug-in.
    let proxies = format!(
        r#"[{{"service":"{}","kind":"nginx","port":80}},{{"service":"{}","kind":"haproxy","port":80,"user":"admin","password":"cb-secret"}}]"#,
        NGINX.0, HAPROXY.0
    );
    create()
        .name(AGENT)
        .mode("global")
        .network(NET)
        .mount("type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock")
        .env("STATS_CARBON_ADDRESS", &format!("{CARBON}:2003"))
        .env("STATS_PREFIX", STATS_PREFIX)
        .env("STATS_IMAGE_NAME_FILTER", FILTER)
        .env("STATS_INTERVAL", &INTERVAL_S.to_string())
        .env("INTERLOCK_STATS_PROXIES", &proxies)
        .image(AGENT_IMAGE)
        .command(&["agent"])
        .run_with(docker);

    // 0.3's series for containers on two nodes, with plausible values.
    let (carbon, dir_a) = series_dir("containers/nodes", APP_A, &KEYS).await;
    // Each node's series read from the container that listed them (once, carbon-cache was seen
    // restarted by Swarm between the two waits).
    let (carbon_b, dir_b) = series_dir("containers/nodes", APP_B, &KEYS).await;
    println!("series: {dir_a}, {dir_b}");
    for (carbon, dir) in [(&carbon, &dir_a), (&carbon_b, &dir_b)] {
        let cpu = fetch(carbon, &format!("{dir}/cpu/totalUsage.wsp"), started);
        let limit = fetch(carbon, &format!("{dir}/memory/limit.wsp"), started);
        let rx = fetch(carbon, &format!("{dir}/network/rxPackets.wsp"), started);
        assert!(cpu.values().any(|v| *v > 0.0), "{dir}: cpu.totalUsage {cpu:?}");
        assert!(limit.values().any(|v| *v > 0.0), "{dir}: memory.limit {limit:?}");
        assert!(!rx.is_empty(), "{dir}: network.rxPackets {rx:?}");
    }

    // Proxies, read inside their containers; `requests` grows (the reading itself is one).
    let (carbon, nginx) = series_dir("proxies", NGINX, &["requests", "active", "waiting"]).await;
    let (_, haproxy) = series_dir("proxies", HAPROXY, &["requests", "active"]).await;
    for dir in [&nginx, &haproxy] {
        let relative = format!("{dir}/requests.wsp");
        eventually(&format!("{relative} grows"), Duration::from_secs(30), || async {
            let points = fetch(&carbon, &relative, started);
            let (first, last) = (points.values().next()?, points.values().last()?);
            (last > first).then_some(())
        })
        .await;
    }

    // The filter: nothing for the container whose image it does not match, nor for the other
    // images' containers (proxies, carbon, the agents).
    let files = whisper_files(&carbon);
    let measured: std::collections::BTreeSet<&str> =
        files.iter().filter_map(|f| f.strip_prefix("containers/nodes/")).filter_map(|f| f.split('/').nth(1)).collect();
    for excluded in [OTHER.0, NGINX.0, HAPROXY.0, CARBON, AGENT] {
        assert!(
            !measured.iter().any(|c| c.starts_with(&format!("{excluded}_"))),
            "{excluded}'s image does not match {FILTER:?}, yet it has series: {measured:?}"
        );
    }

    // Carbon away for 30 s: a new task (and empty whisper files) when it is back.
    let outage_start = now();
    docker(&["service", "scale", "--detach", &format!("{CARBON}=0")]);
    eventually("carbon-cache stopped", Duration::from_secs(30), || async {
        carbon_container().is_none().then_some(())
    })
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(Duration::from_secs(now() - outage_start))).await;
    let outage_end = now();
    docker(&["service", "scale", "--detach", &format!("{CARBON}=1")]);
    let (carbon_again, _) = series_dir("containers/nodes", APP_A, &["cpu/totalUsage"]).await;
    assert_ne!(carbon_again, carbon, "carbon-cache came back as a new container");
    let back = now();
    // Sending resumes: points stamped after Carbon is back, for both nodes.
    for dir in [&dir_a, &dir_b] {
        let relative = format!("{dir}/cpu/totalUsage.wsp");
        let points = eventually(&format!("{relative}: points after the outage"), Duration::from_secs(30), || async {
            let points = try_fetch(&carbon_again, &relative, started)?;
            points.keys().any(|ts| *ts > back + INTERVAL_S).then_some(points)
        })
        .await;
        // Nothing was blocked: the agent read on through the outage and its buffer delivered it.
        let during = points.keys().filter(|ts| **ts > outage_start + 3 && **ts + 3 < outage_end).count();
        assert!(
            during as u64 >= (outage_end - outage_start) / INTERVAL_S / 2,
            "{relative}: {during} points stamped inside the outage {outage_start}..{outage_end}: {points:?}"
        );
        println!(
            "{relative}: {} points since the restart, {during} stamped during the outage",
            points.keys().filter(|ts| **ts >= back).count()
        );
    }
    println!("took {} s", now() - started);
}
