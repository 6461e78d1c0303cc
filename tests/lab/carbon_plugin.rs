//! Plug-ins run by the core (`[Plugins]` in the TOML), on the lab: `interlock run` as a Swarm
//! service with the `carbon` plug-in enabled writes the statistics agent itself (one task per
//! node), whose series reach a real carbon-cache; and stopping carbon-cache for 30 s loses no
//! route: an app deployed during the outage is served, and sending resumes when Carbon is back.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use interlock::docker::DockerClient;
use reconcilers::desired::AGENT_SERVICE;
use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use support::{docker, docker_quiet, eventually, lab, node_addr, service};

/// The core's service name: the one the other lab tests also clear (`stop_demo_operator`).
const CORE: &str = "interlock-hitless";
const CARBON: &str = "pc-carbon";
const APP_NET: &str = "pc-net";
const CONFIG_PREFIX: &str = "pc-config-";
const APPS: [&str; 2] = ["pc-app", "pc-app2"];
const PORT: u16 = 8099;
const PROXY_NODE: &str = "lb-01";
const WHISPER: &str = "/var/lib/graphite/whisper/pctest/stats";

const TOML: &str = r#"# tests/lab/carbon_plugin.rs: one nginx cluster on lb-01 and the carbon plug-in.
ListenAddr = ":8080"
DockerURL = "unix:///var/run/docker.sock"
PollInterval = "3s"
EndpointOverride = "interlock-hitless:8080"

[Extensions.pc]
  Image = "local/interlock:lab"
  Args = ["extension"]
  ProxyImage = "local/interlock-proxy:lab"
  ServiceCluster = "pc"
  ProxyConstraints = ["node.hostname==lb-01"]
  PublishMode = "host"
  PublishedPort = 8099
  TargetPort = 80
  PublishedSSLPort = 8459
  TargetSSLPort = 443
  [Extensions.pc.Config]
    User = "nginx"
    PidPath = "/var/run/proxy.pid"
    WorkerProcesses = 1

[Plugins]
  Enabled = ["example", "carbon"]
  [Plugins.Carbon]
    Address = "pc-carbon:2003"
    Prefix = "pctest.stats"
    ImageNameFilter = "docker-demo"
    Interval = "2s"
"#;

/// Removes what this test creates, the core first (it would re-create what goes after it).
async fn clean(api: &DockerClient) {
    support::stop_demo_operator(api).await;
    docker_quiet(&["service", "rm", APPS[0], APPS[1], CARBON]);
    support::remove_owned_services(api).await;
    eventually("the test's services gone", Duration::from_secs(60), || async {
        let left = api.list_services("").await.ok()?;
        left.iter().all(|s| !s.def.name.starts_with("pc-") && s.def.name != AGENT_SERVICE).then_some(())
    })
    .await;
    for c in api.list_configs("").await.unwrap() {
        if c.name.starts_with(CONFIG_PREFIX)
            || c.labels.get(LABEL_MANAGED_BY).is_some_and(|v| v == MANAGED_BY)
                && c.name.starts_with("interlock-proxy-pc")
        {
            docker_quiet(&["config", "rm", &c.id]);
        }
    }
    docker_quiet(&["network", "rm", APP_NET]);
}

fn create_app(name: &str) {
    service::Create::new()
        .detach()
        .quiet()
        .name(name)
        .network(APP_NET)
        .constraint("node.hostname==app-00")
        .label("com.docker.lb.hosts", &format!("{name}.local"))
        .label("com.docker.lb.port", "8080")
        .label("com.docker.lb.service_cluster", "pc")
        .env("METADATA", "pc")
        .image("local/docker-demo:lab")
        .run_with(docker);
}

async fn served(name: &str, why: &str) {
    eventually(why, Duration::from_secs(90), || async {
        support::get(&node_addr(PROXY_NODE), PORT, &format!("{name}.local")).await.filter(|a| a.status == 200).map(drop)
    })
    .await;
}

/// A whisper file of `app`'s container on app-00, in the running carbon-cache.
async fn series_of(app: &str, why: &str) {
    eventually(why, Duration::from_secs(60), || async {
        let filter = format!("label=com.docker.swarm.service.name={CARBON}");
        let carbon = docker(&["ps", "-q", "--filter", &filter, "--filter", "status=running"]);
        let carbon = carbon.lines().next()?.to_owned();
        let out = std::process::Command::new("docker")
            .args(["exec", &carbon, "find", WHISPER, "-name", "totalUsage.wsp"])
            .output()
            .ok()?;
        let files = String::from_utf8_lossy(&out.stdout).into_owned();
        let prefix = format!("{WHISPER}/containers/nodes/app-00/{app}_1_");
        files.lines().any(|f| f.starts_with(&prefix)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_core_runs_the_statistics_agent_and_a_carbon_outage_loses_no_route() {
    let api = lab().await;
    clean(&api).await;
    docker_quiet(&["network", "create", "-d", "overlay", "interlock"]);
    docker(&["network", "create", "-d", "overlay", APP_NET]);
    // Carbon on the operator network, where the core's agent joins; dnsrr: the lab has no IPVS.
    service::Create::new()
        .detach()
        .quiet()
        .name(CARBON)
        .network("interlock")
        .endpoint_mode("dnsrr")
        .constraint("node.role==manager")
        .image("local/carbon:lab")
        .run_with(docker);
    let toml = std::env::temp_dir().join(format!("plugins-core-{}.toml", std::process::id()));
    std::fs::write(&toml, TOML).unwrap();
    let config = format!("{CONFIG_PREFIX}{}", std::process::id());
    docker(&["config", "create", &config, toml.to_str().unwrap()]);
    support::create_core_service(CORE, &config);
    create_app(APPS[0]);
    served(APPS[0], "the app is routed").await;
    let agent = eventually("the core wrote the statistics agent", Duration::from_secs(60), || async {
        api.inspect_service(AGENT_SERVICE).await.ok().flatten()
    })
    .await;
    assert!(agent.def.global, "one agent per node");
    series_of(APPS[0], "the app's container series reach Carbon through the core's agent").await;

    // Carbon away for 30 s: routing goes on.
    docker(&["service", "scale", "--detach", &format!("{CARBON}=0")]);
    eventually("carbon-cache stopped", Duration::from_secs(30), || async {
        let filter = format!("label=com.docker.swarm.service.name={CARBON}");
        docker(&["ps", "-q", "--filter", &filter]).trim().is_empty().then_some(())
    })
    .await;
    let outage = std::time::Instant::now();
    create_app(APPS[1]);
    served(APPS[1], "an app deployed while Carbon is down is routed").await;
    served(APPS[0], "the first app is still routed").await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    docker(&["service", "scale", "--detach", &format!("{CARBON}=1")]);
    series_of(APPS[1], "sending resumed when Carbon is back").await;
    // interlock logs to stderr, which `docker service logs` passes on as its own stderr.
    let out = std::process::Command::new("docker").args(["service", "logs", "--raw", CORE]).output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("[example] action=received event=interlock-start"), "the example plug-in ran: {logs}");
    clean(&api).await;
}
