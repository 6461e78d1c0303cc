//! `interlock run` on the lab: the loop converges, then sends no write while nothing changes, and
//! config edits made while it runs move or republish a proxy in one update each.
//!
//! The loop runs in-process so the test can count the Docker requests it sends.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use support::{docker, docker_quiet, eventually, get, lab, node_addr};

const LAB_CONFIG: &str = "deploy/examples/service-clusters.lab.toml";

#[tokio::test]
async fn run_converges_stays_quiet_and_follows_config_edits() {
    let api = lab().await;
    support::stop_demo_operator(&api).await;
    docker_quiet(&["service", "rm", "demo-east", "demo-west"]);
    for s in api.list_services(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["service", "rm", &s.id]);
    }
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-east", "lb-00"]);
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-west", "lb-01"]);
    docker_quiet(&["network", "create", "-d", "overlay", "interlock"]);

    // A copy of the walk-through's lab config with a 1 s poll and the proxies' placement declared
    // (ProxyConstraints), edited below while the loop runs.
    let dir = std::env::temp_dir().join(format!("interlock-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interlock.toml");
    let mut text =
        std::fs::read_to_string(LAB_CONFIG).unwrap().replace("PollInterval = \"3s\"", "PollInterval = \"1s\"");
    for region in ["us-east", "us-west"] {
        text = text.replace(
            &format!("ServiceCluster = \"{region}\"\n"),
            &format!(
                "ServiceCluster = \"{region}\"\n    ProxyConstraints = [\"node.labels.nodetype==loadbalancer\", \"node.labels.region=={region}\"]\n"
            ),
        );
    }
    assert_eq!(text.matches("    ProxyConstraints = ").count(), 2);
    std::fs::write(&path, &text).unwrap();
    let config = reconcilers::config::parse("t", &text).unwrap().config;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let counters_client = api.clone();
    let ctx =
        interlock::core::context::Context::new(api.clone(), interlock::core::proxycheck::ProxyChecker::discover());
    let loop_task = tokio::spawn(interlock::core::controller::run(ctx, path.clone(), config, async {
        let _ = stopped.await;
    }));

    // Converged: both proxies answer (404: no routes yet).
    for node in ["lb-00", "lb-01"] {
        let addr = node_addr(node);
        eventually(&format!("proxy on {node}"), Duration::from_secs(60), || async {
            get(&addr, 80, "nothing.local").await.filter(|a| a.status == 404)
        })
        .await;
    }
    // Let the last rollout settle and old configs go; then count.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let writes = counters_client.counters().writes();
    let reads = counters_client.counters().reads();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_reads = counters_client.counters().reads() - reads;
    assert_eq!(counters_client.counters().writes(), writes, "a converged swarm gets no write");
    assert!(idle_reads >= 5 * 3, "the loop kept looking ({idle_reads} reads in 5 s)");
    println!("idle: {idle_reads} reads in 5 s at PollInterval 1s");

    // The loop's status endpoint on ListenAddr (:8080).
    let status = support::request("127.0.0.1", 8080, "localhost", "/status", &[]).await.expect("status endpoint");
    assert_eq!(status.status, 200);
    assert!(status.body.contains("\"us-east\"") && status.body.contains("\"passes\""), "{}", status.body);

    // Move us-east's proxy to app-00: one update.
    let moved = text.replace(
        "ProxyConstraints = [\"node.labels.nodetype==loadbalancer\", \"node.labels.region==us-east\"]",
        "ProxyConstraints = [\"node.hostname==app-00\"]",
    );
    assert_ne!(moved, text);
    std::fs::write(&path, &moved).unwrap();
    let app_00 = node_addr("app-00");
    eventually("us-east's proxy answers on app-00", Duration::from_secs(60), || async {
        get(&app_00, 80, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(counters_client.counters().writes() - writes, 1, "placement changed in one update");
    let writes = counters_client.counters().writes();

    // Republish us-west's proxy on 8081: one update.
    let (east_part, west_part) = moved.split_once("[Extensions.us-west]").unwrap();
    let republished = format!(
        "{east_part}[Extensions.us-west]{}",
        west_part.replacen("PublishedPort = 80\n", "PublishedPort = 8081\n", 1)
    );
    assert_ne!(republished, moved);
    std::fs::write(&path, &republished).unwrap();
    let lb_01 = node_addr("lb-01");
    eventually("us-west's proxy answers on lb-01:8081", Duration::from_secs(60), || async {
        get(&lb_01, 8081, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(counters_client.counters().writes() - writes, 1, "ports changed in one update");
    assert!(get(&lb_01, 80, "nothing.local").await.is_none(), "port 80 on lb-01 is no longer published");

    // An invalid edit is reported and changes nothing.
    let writes = counters_client.counters().writes();
    std::fs::write(&path, republished.replace("PublishMode = \"host\"", "PublishMode = \"bridge\"")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(counters_client.counters().writes(), writes, "an invalid config writes nothing");
    assert!(get(&lb_01, 8081, "nothing.local").await.is_some(), "the last good config keeps serving");

    // A valid TOML whose rendered nginx config nginx rejects: never rolled out.
    let (east_part, west_part) = republished.split_once("[Extensions.us-west]").unwrap();
    let rejected = format!(
        "{east_part}[Extensions.us-west]{}",
        west_part.replacen(
            "MaxConnections = 2048",
            "MaxConnections = 2048\n      HTTPOptions = [\"bogus_directive on;\"]",
            1
        )
    );
    assert_ne!(rejected, republished);
    std::fs::write(&path, &rejected).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(counters_client.counters().writes(), writes, "a config nginx rejects is not rolled out");
    assert_eq!(get(&lb_01, 8081, "nothing.local").await.map(|a| a.status), Some(404), "us-west keeps serving");

    let _ = stop.send(());
    let stats = loop_task.await.unwrap().unwrap();
    assert!(stats.passes > 5);
    std::fs::remove_dir_all(&dir).ok();
    for s in api.list_services(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["service", "rm", &s.id]);
    }
}
