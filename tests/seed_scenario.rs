//! The service-clusters walk-through (`shared/seeds/002_…`), for real, on the project's lab:
//! lb-00 (us-east) and lb-01 (us-west) labelled as in the document, the document's config with
//! lab images, the two demo apps, and real HTTP requests through each proxy. The operator does
//! the work through its own CLI (`interlock apply` / `plan`).
//!
//! One test, in steps: the steps share one swarm, and their order is the walk-through's.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use interlock::docker::DockerClient;
use reconcilers::desired::{LABEL_MANAGED_BY, MANAGED_BY};
use reconcilers::swarm::{ConfigDef, ConfigMount, ServiceDef, ServiceFacts, UpdatePolicy};
use support::{docker, docker_quiet, eventually, get, interlock, lab, node_addr};

const CONFIG: &str = "deploy/examples/service-clusters.lab.toml";
const APP_IMAGE: &str = "local/interlock-app:lab";

/// Removes what earlier runs left: the demo apps, everything interlock owns, the demo bodies.
async fn clean(docker_api: &DockerClient) {
    docker_quiet(&["service", "rm", "demo-east", "demo-west"]);
    for s in docker_api.list_services(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["service", "rm", &s.id]);
    }
    eventually("old services gone", Duration::from_secs(30), || async {
        let left = docker_api.list_services("").await.ok()?;
        left.iter().all(|s| !s.def.name.starts_with("demo-") && !s.def.name.starts_with("interlock-")).then_some(())
    })
    .await;
    for c in docker_api.list_configs(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["config", "rm", &c.id]);
    }
    docker_quiet(&["config", "rm", "demo-east-body", "demo-west-body"]);
}

/// `docker service create --name demo-REGION --network demo-REGION --label com.docker.lb.…`,
/// serving a body that names the app.
async fn create_demo(docker_api: &DockerClient, region: &str) {
    let name = format!("demo-{region}");
    let body = ConfigDef {
        name: format!("{name}-body"),
        labels: BTreeMap::new(),
        data: format!("{name} us-{region}\n").into_bytes(),
    };
    docker_api.create_config(&body).await.unwrap();
    let def = ServiceDef {
        name: name.clone(),
        labels: BTreeMap::from([
            ("com.docker.lb.hosts".to_owned(), format!("{name}.local")),
            ("com.docker.lb.port".to_owned(), "80".to_owned()),
            ("com.docker.lb.service_cluster".to_owned(), format!("us-{region}")),
        ]),
        image: APP_IMAGE.to_owned(),
        env: vec![format!("METADATA=us-{region}")],
        replicas: 1,
        constraints: vec!["node.hostname==app-00".to_owned()],
        networks: vec![name.clone()],
        configs: vec![ConfigMount { config_name: body.name.clone(), target: "/www/index.html".to_owned() }],
        update: UpdatePolicy { parallelism: 1, ..UpdatePolicy::default() },
        ..ServiceDef::default()
    };
    docker_api.create_service(&def).await.unwrap();
}

async fn service(docker_api: &DockerClient, name: &str) -> ServiceFacts {
    docker_api.inspect_service(name).await.unwrap().unwrap_or_else(|| panic!("service {name} exists"))
}

/// Running tasks of a service.
async fn running(docker_api: &DockerClient, name: &str) -> usize {
    let id = service(docker_api, name).await.id;
    docker_api.list_tasks().await.unwrap().iter().filter(|t| t.service_id == id && t.running).count()
}

fn apply() -> String {
    let (code, out) = interlock(&["apply", "-c", CONFIG, "--timeout", "90"]);
    assert_eq!(code, 0, "interlock apply failed:\n{out}");
    out
}

/// The body served for `host` through `node`'s port 80, once it is `status`.
async fn answer_becomes(node: &str, host: &str, status: u16) -> String {
    let addr = node_addr(node);
    eventually(&format!("{host} via {node} answers {status}"), Duration::from_secs(30), || async {
        get(&addr, 80, host).await.filter(|a| a.status == status).map(|a| a.body)
    })
    .await
}

#[tokio::test]
async fn service_clusters_walkthrough() {
    let api = lab().await;
    support::stop_demo_operator(&api).await;
    clean(&api).await;

    // The document's node labels and networks.
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-east", "lb-00"]);
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-west", "lb-01"]);
    for network in ["interlock", "demo-east", "demo-west"] {
        docker_quiet(&["network", "create", "-d", "overlay", network]);
    }

    // Interlock first, then the apps, as in the document.
    let first = apply();
    assert!(first.contains("converged"), "{first}");
    create_demo(&api, "east").await;
    create_demo(&api, "west").await;
    eventually("demo apps running", Duration::from_secs(30), || async {
        (running(&api, "demo-east").await == 1 && running(&api, "demo-west").await == 1).then_some(())
    })
    .await;
    apply();

    // Each cluster serves its own app, and only that.
    assert_eq!(answer_becomes("lb-00", "demo-east.local", 200).await, "demo-east us-east\n");
    answer_becomes("lb-00", "demo-west.local", 503).await;
    assert_eq!(answer_becomes("lb-01", "demo-west.local", 200).await, "demo-west us-west\n");
    answer_becomes("lb-01", "demo-east.local", 503).await;
    assert_eq!(service(&api, "interlock-proxy-us-east").await.def.constraints.len(), 2);

    // Converged: plan reports nothing, apply writes nothing.
    let (code, out) = interlock(&["plan", "-c", CONFIG]);
    assert_eq!(code, 0, "plan after convergence:\n{out}");
    assert!(out.contains("nothing to do"), "{out}");
    let versions = |services: Vec<ServiceFacts>| -> BTreeMap<String, u64> {
        services.into_iter().map(|s| (s.def.name, s.version)).collect()
    };
    let services_before = versions(api.list_services("").await.unwrap());
    let configs_before = api.list_configs("").await.unwrap();
    assert!(configs_before.len() >= 4, "two proxy configs and two app bodies: {configs_before:#?}");
    assert!(apply().contains("converged: 0 write(s)"));
    assert_eq!(versions(api.list_services("").await.unwrap()), services_before, "no service was written");
    assert_eq!(api.list_configs("").await.unwrap(), configs_before, "no config was written");

    // Scaling demo-east to 2 puts both tasks in us-east's upstream and leaves us-west alone.
    let west_before = service(&api, "interlock-proxy-us-west").await.def;
    let east = service(&api, "demo-east").await;
    api.update_service(&east.id, east.version, &ServiceDef { replicas: 2, ..east.def.clone() }).await.unwrap();
    eventually("demo-east at 2 tasks", Duration::from_secs(30), || async {
        (running(&api, "demo-east").await == 2).then_some(())
    })
    .await;
    apply();
    let proxy = service(&api, "interlock-proxy-us-east").await;
    let config_name = &proxy.def.configs[0].config_name;
    let config = api.list_configs("").await.unwrap().into_iter().find(|c| &c.name == config_name).unwrap();
    let text = String::from_utf8(config.data).unwrap();
    assert_eq!(text.matches(":80;").count(), 2, "both tasks are upstream servers:\n{text}");
    assert_eq!(service(&api, "interlock-proxy-us-west").await.def, west_before, "us-west's spec did not change");
    assert_eq!(answer_becomes("lb-00", "demo-east.local", 200).await, "demo-east us-east\n");

    // Removing demo-east removes its route.
    api.delete_service("demo-east").await.unwrap();
    apply();
    answer_becomes("lb-00", "demo-east.local", 503).await;
    assert_eq!(answer_becomes("lb-01", "demo-west.local", 200).await, "demo-west us-west\n");

    clean(&api).await;
}
