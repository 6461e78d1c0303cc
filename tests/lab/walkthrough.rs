//! The service-clusters walk-through (Interlock's documentation), word for word, on the project's
//! lab: every command of the document in its order, through the docker CLI, with only the image
//! names changed (and the extension's Args, since the lab's extension image is interlock itself).
//! interlock runs as the document runs it: a service pinned to a manager, its TOML in a Docker
//! config. The document then pins each proxy by hand (`docker service update --constraint-add`),
//! and those constraints must survive interlock's passes and later app changes.
//!
//! It runs with `HitlessServiceUpdate = true` added to each extension (the only change to the
//! lab's TOML): route changes then reach the running proxies in place, and the scaling steps
//! check that the proxy tasks were not restarted. The rolling path is covered by the other lab
//! tests.
//!
//! One test, in steps: the steps share one swarm, and their order is the walk-through's.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use interlock::docker::DockerClient;
use reconcilers::observed::ServiceFacts;
use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use support::walkthrough::{self, answer_becomes, answered_by, assert_demo_answer, pin_proxy, pinned, update_by_hand};
use support::{docker, docker_quiet, eventually, interlock, lab, service};

/// The copy of the lab's TOML this test runs with (hitless updates on).
const CONFIG: &str = "target/seed-scenario.hitless.toml";
const OPERATOR_IMAGE: &str = "local/interlock:lab";
/// The TOML's PollInterval.
const POLL: Duration = Duration::from_secs(3);

/// Removes what earlier runs left: the operator service, the demo apps, everything interlock
/// owns, the operator's config object.
async fn clean(api: &DockerClient) {
    // The operator first, and wait until its container has stopped: until then it keeps
    // reconciling and would re-create what is removed below.
    docker_quiet(&["service", "rm", "interlock"]);
    eventually("the operator's container stopped", Duration::from_secs(30), || async {
        docker(&["ps", "-q", "--filter", "label=com.docker.swarm.service.name=interlock"])
            .trim()
            .is_empty()
            .then_some(())
    })
    .await;
    docker_quiet(&["service", "rm", "demo-east", "demo-west"]);
    for s in api.list_services(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["service", "rm", &s.id]);
    }
    eventually("old services gone", Duration::from_secs(30), || async {
        let left = api.list_services("").await.ok()?;
        left.iter().all(|s| !s.def.name.starts_with("demo-") && !s.def.name.starts_with("interlock")).then_some(())
    })
    .await;
    for c in api.list_configs(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["config", "rm", &c.id]);
    }
    docker_quiet(&["config", "rm", "service.interlock.conf"]);
}

async fn service(api: &DockerClient, name: &str) -> ServiceFacts {
    api.inspect_service(name).await.unwrap().unwrap_or_else(|| panic!("service {name} exists"))
}

/// Running tasks of a service, and the hostnames of their nodes.
async fn running_on(api: &DockerClient, name: &str) -> Vec<String> {
    let Ok(Some(s)) = api.inspect_service(name).await else { return vec![] };
    let nodes = api.list_nodes().await.unwrap();
    let mut hosts: Vec<String> = api
        .list_tasks()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.service_id == s.id && t.running)
        .filter_map(|t| nodes.iter().find(|n| n.id == t.node_id).map(|n| n.hostname.clone()))
        .collect();
    hosts.sort();
    hosts
}

/// The lab's TOML with `HitlessServiceUpdate = true` in each extension, written to [`CONFIG`].
fn write_hitless_config() {
    std::fs::write(CONFIG, walkthrough::hitless_config(str::to_owned)).unwrap();
}

/// IDs of the running tasks of a service: the same IDs later mean no task was restarted.
async fn running_tasks(api: &DockerClient, name: &str) -> Vec<String> {
    let Ok(Some(s)) = api.inspect_service(name).await else { return vec![] };
    let mut ids: Vec<String> = api
        .list_tasks()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.service_id == s.id && t.running)
        .map(|t| t.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn service_clusters_walkthrough_word_for_word() {
    write_hitless_config();
    let api = lab().await;
    support::stop_demo_operator(&api).await;
    clean(&api).await;
    // Labels an earlier run or the demo may have left, so the document's commands start clean.
    for node in ["lb-00", "lb-01"] {
        docker_quiet(&["node", "update", "--label-rm", "nodetype", "--label-rm", "region", node]);
    }

    // Node labels.
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-east", "lb-00"]);
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-west", "lb-01"]);
    assert_eq!(
        docker(&["node", "inspect", "-f", "{{ .Spec.Labels  }}", "lb-00"]).trim(),
        "map[nodetype:loadbalancer region:us-east]"
    );

    // The config object, the interlock network, and interlock as a service on a manager.
    docker(&["config", "create", "service.interlock.conf", CONFIG]);
    docker_quiet(&["network", "create", "-d", "overlay", "interlock"]);
    service::Create::new()
        .detach()
        .name("interlock")
        .mount("src=/var/run/docker.sock,dst=/var/run/docker.sock,type=bind")
        .network("interlock")
        .constraint("node.role==manager")
        .config("src=service.interlock.conf,target=/config.toml")
        .image(OPERATOR_IMAGE)
        .command(&["-D", "run", "-c", "/config.toml"])
        .run_with(docker);

    // Configure proxy services: pin each region's proxy to its load-balancer node, by hand.
    for region in ["us-east", "us-west"] {
        let proxy = format!("interlock-proxy-{region}");
        eventually(&format!("interlock created {proxy}"), Duration::from_secs(60), || async {
            api.inspect_service(&proxy).await.ok().flatten().map(drop)
        })
        .await;
        pin_proxy(region);
    }
    // Interlock's operations docs tune the proxy by hand too; the TOML declares none of these.
    update_by_hand(
        &["--stop-grace-period", "10s", "--update-failure-action", "pause", "--update-delay", "2s"],
        "interlock-proxy-us-west",
    );

    // The apps' networks, then the apps, exactly as the document creates them.
    docker_quiet(&["network", "create", "-d", "overlay", "demo-east"]);
    docker_quiet(&["network", "create", "-d", "overlay", "demo-west"]);
    for (name, region) in [("demo-east", "us-east"), ("demo-west", "us-west")] {
        walkthrough::create_demo_app(name, region);
    }

    // us-east knows only the us-east app, us-west only the us-west app.
    walkthrough::assert_clusters_isolated().await;
    for region in ["us-east", "us-west"] {
        let proxy = format!("interlock-proxy-{region}");
        assert_eq!(service(&api, &proxy).await.def.constraints, pinned(region), "{proxy} keeps its pins");
    }
    for (proxy, node) in [("interlock-proxy-us-east", "lb-00"), ("interlock-proxy-us-west", "lb-01")] {
        eventually(&format!("{proxy} runs on {node} only"), Duration::from_secs(60), || async {
            (running_on(&api, proxy).await == [node]).then_some(())
        })
        .await;
    }

    // Quiet: over 3 × PollInterval interlock writes nothing and the pins stay.
    let versions = |services: Vec<ServiceFacts>| -> BTreeMap<String, u64> {
        services.into_iter().map(|s| (s.def.name, s.version)).collect()
    };
    // Settled: nothing left to write, and no rollout running (Swarm bumps a service's version
    // as its rollout progresses).
    eventually("the proxies settled", Duration::from_secs(60), || async {
        for proxy in ["interlock-proxy-us-east", "interlock-proxy-us-west"] {
            let state = service(&api, proxy).await.update_state;
            if matches!(state.as_deref(), Some("updating" | "rollback_started")) {
                return None;
            }
        }
        let (code, out) = interlock(&["plan", "-c", CONFIG]);
        (code == 0 && out.contains("nothing to do")).then_some(())
    })
    .await;
    let before = versions(api.list_services("").await.unwrap());
    let configs_before = api.list_configs("").await.unwrap();
    tokio::time::sleep(POLL * 3 + Duration::from_secs(1)).await;
    assert_eq!(versions(api.list_services("").await.unwrap()), before, "no service was written");
    assert_eq!(api.list_configs("").await.unwrap(), configs_before, "no config was written");
    let (_, plan) = interlock(&["plan", "-c", CONFIG]);
    assert!(
        plan.contains("note: constraints set by hand on interlock-proxy-us-east")
            && plan.contains("declare ProxyConstraints to manage it"),
        "plan names the fields set by hand:\n{plan}"
    );
    let (code, check) = interlock(&["check", "-c", CONFIG]);
    assert_eq!(code, 0, "{check}");
    assert!(check.contains("proxy interlock-proxy-us-east can run on lb-00 (constraints"), "{check}");

    // A later app change (demo-east scaled to 2) re-renders us-east's config: it reaches the
    // running proxy in place (the same task keeps running), the pins stay, us-west is not touched.
    let east_tasks = running_tasks(&api, "interlock-proxy-us-east").await;
    let west_before = service(&api, "interlock-proxy-us-west").await;
    docker(&["service", "scale", "--detach", "demo-east=2"]);
    answered_by("lb-00", "demo-east.local", 2).await;
    assert_eq!(running_tasks(&api, "interlock-proxy-us-east").await, east_tasks, "reloaded in place, not restarted");
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(service(&api, "interlock-proxy-us-east").await.def.constraints, pinned("us-east"));
    assert_eq!(running_on(&api, "interlock-proxy-us-east").await, ["lb-00"]);
    assert_eq!(service(&api, "interlock-proxy-us-west").await.version, west_before.version, "us-west untouched");

    // A change in us-west (demo-west scaled to 2) reaches its proxy in place too: the hand
    // tuning stays.
    let west_tasks = running_tasks(&api, "interlock-proxy-us-west").await;
    docker(&["service", "scale", "--detach", "demo-west=2"]);
    answered_by("lb-01", "demo-west.local", 2).await;
    assert_eq!(running_tasks(&api, "interlock-proxy-us-west").await, west_tasks, "reloaded in place, not restarted");
    let west = service(&api, "interlock-proxy-us-west").await.def;
    assert_eq!(west.stop_grace_period, Some(Duration::from_secs(10)));
    assert_eq!(west.update.delay, Some(Duration::from_secs(2)));
    assert!(!west.update.rollback_on_failure, "--update-failure-action pause stays");
    assert_eq!(west.constraints, pinned("us-west"));
    eventually("plan: nothing to do once delivered", Duration::from_secs(30), || async {
        let (code, out) = interlock(&["plan", "-c", CONFIG]);
        (code == 0 && out.contains("nothing to do")).then_some(())
    })
    .await;

    // Removing demo-east removes its route.
    docker(&["service", "rm", "demo-east"]);
    answer_becomes("lb-00", "demo-east.local", 404).await;
    assert_demo_answer(&answer_becomes("lb-01", "demo-west.local", 200).await, "us-west");

    clean(&api).await;
}
