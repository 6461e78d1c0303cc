//! Integration tests against the project's real multi-node Swarm lab (`deploy/lab/swarm-lab.sh`),
//! through the project's own Docker adapter.
//!
//! These tests never pass without a lab: if the manager cannot be reached they fail and say how
//! to start it. `deploy/test.sh` starts the lab before running them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use reconcilers::swarm::{ConfigDef, NodeRole, ObjectKind, PortDef, PublishMode, ServiceDef, UpdatePolicy};
use support::lab;

mod support;

const APP_IMAGE: &str = "local/interlock-app:lab";
const TEST_LABEL: &str = "com.docker.interlock.lab-test";

/// A service name unique to this test run.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn app_service(name: &str) -> ServiceDef {
    ServiceDef {
        name: name.to_owned(),
        labels: BTreeMap::from([
            (TEST_LABEL.to_owned(), name.to_owned()),
            ("com.docker.lb.hosts".to_owned(), format!("{name}.local")),
        ]),
        image: APP_IMAGE.to_owned(),
        command: vec![],
        args: vec![],
        env: vec!["METADATA=lab-test".to_owned()],
        container_labels: BTreeMap::from([("role".to_owned(), "app".to_owned())]),
        replicas: 1,
        global: false,
        constraints: vec!["node.hostname==app-00".to_owned()],
        placement_preferences: vec!["spread=node.labels.zone".to_owned()],
        networks: vec![],
        ports: vec![PortDef { published: 18080, target: 80, mode: PublishMode::Host }],
        configs: vec![],
        secrets: vec![],
        stop_signal: Some("SIGTERM".to_owned()),
        stop_grace_period: Some(Duration::from_secs(2)),
        update: UpdatePolicy {
            parallelism: 1,
            delay: Some(Duration::from_millis(500)),
            rollback_on_failure: true,
            start_first: false,
        },
        bind_mounts: vec![],
        managed: Default::default(),
    }
}

#[tokio::test]
async fn lab_has_a_manager_and_three_named_workers() {
    let docker = lab().await;
    let nodes = docker.list_nodes().await.expect("list nodes");
    assert_eq!(nodes.len(), 4, "{nodes:#?}");
    let workers: Vec<&str> = nodes.iter().filter(|n| n.role == NodeRole::Worker).map(|n| n.hostname.as_str()).collect();
    assert_eq!(workers, ["app-00", "lb-00", "lb-01"]);
    assert_eq!(nodes.iter().filter(|n| n.role == NodeRole::Manager).count(), 1);
    assert!(nodes.iter().all(|n| n.ready), "every node is ready: {nodes:#?}");
    assert!(nodes.iter().all(|n| n.address.is_some() && n.version > 0));
}

#[tokio::test]
async fn a_labelled_service_is_created_read_back_and_deleted() {
    let docker = lab().await;
    let name = unique("itest-svc");
    let want = app_service(&name);
    let id = docker.create_service(&want).await.expect("create service");
    let read = docker.inspect_service(&name).await.expect("inspect").expect("the service exists");
    // Delete before asserting, so a failed assertion leaves nothing behind.
    let listed = docker.list_services(&format!("{TEST_LABEL}={name}")).await.expect("list by label");
    docker.delete_service(&id).await.expect("delete service");

    assert_eq!(read.id, id);
    assert!(read.version > 0);
    assert_eq!(read.def, want, "what was written reads back the same");
    assert_eq!(listed.len(), 1, "the label filter finds exactly this service");
    assert_eq!(listed[0].def.name, name);
    assert_eq!(docker.inspect_service(&name).await.expect("inspect after delete"), None);
}

#[tokio::test]
async fn a_config_object_is_created_listed_and_deleted() {
    let docker = lab().await;
    let name = unique("itest-cfg");
    let def = ConfigDef {
        name: name.clone(),
        labels: BTreeMap::from([(TEST_LABEL.to_owned(), name.clone())]),
        data: b"events { }\n".to_vec(),
    };
    let id = docker.create_config(&def).await.expect("create config");
    let listed = docker.list_configs(&format!("{TEST_LABEL}={name}")).await.expect("list configs");
    docker.delete_config(&id).await.expect("delete config");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].name.as_str()), (id.as_str(), name.as_str()));
    assert_eq!(listed[0].labels, def.labels);
    assert_eq!(listed[0].data, def.data, "the content reads back");
    let after = docker.list_configs(&format!("{TEST_LABEL}={name}")).await.expect("list after delete");
    assert!(after.is_empty());
}

#[tokio::test]
async fn service_changes_arrive_as_events() {
    let docker = lab().await;
    let name = unique("itest-evt");
    // Not polled before the create: the adapter's stream must still see it.
    let mut events = Box::pin(docker.events(&[ObjectKind::Service]));
    let id = docker.create_service(&app_service(&name)).await.expect("create service");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        let event = event.expect("event stream");
        if event.id == id {
            seen.push(event.action.clone());
            if event.action == "create" {
                break;
            }
        }
    }
    docker.delete_service(&id).await.expect("delete service");
    assert_eq!(seen.last().map(String::as_str), Some("create"), "saw {seen:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut removed = false;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        let event = event.expect("event stream");
        if event.id == id && event.action == "remove" {
            assert_eq!(event.kind, ObjectKind::Service);
            assert_eq!(event.name.as_deref(), Some(name.as_str()));
            removed = true;
            break;
        }
    }
    assert!(removed, "a remove event follows the delete");
}

#[tokio::test]
async fn check_reports_the_lab_and_the_seed_config() {
    let docker = lab().await;
    let engine = docker.require_manager().await.expect("manager");
    let observed = docker.observe(&interlock::reconcile::managed_label()).await.expect("observe");
    let text = include_str!("../deploy/examples/service-clusters.toml");
    let config = reconcilers::config::parse("service-clusters.toml", text).expect("seed parses").config;
    let report = interlock::report::check_report(&engine, &observed, &config);
    assert!(report.text.contains("swarm: manager"), "{}", report.text);
    for node in ["lb-00", "lb-01", "app-00"] {
        assert!(report.text.contains(node), "{}", report.text);
    }
}
