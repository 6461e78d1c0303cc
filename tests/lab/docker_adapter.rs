//! Integration tests against the project's real multi-node Swarm lab (`deploy/lab/swarm-lab.sh`),
//! through the project's own Docker adapter.
//!
//! These tests never pass without a lab: if the manager cannot be reached they fail and say how
//! to start it. `deploy/test.sh` starts the lab before running them.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use futures_util::StreamExt;
use interlock::docker::DockerClient;
use reconcilers::config::DockerUrl;
use reconcilers::observed::{
    BindMount, ConfigDef, NetworkDef, NodeRole, ObjectKind, PortDef, PublishMode, SecretDef, ServiceDef, UpdatePolicy,
};
use support::{docker, docker_quiet, eventually, lab, lab_env};

#[path = "../support/mod.rs"]
mod support;

const APP_IMAGE: &str = "local/interlock-app:lab";
const PROXY_IMAGE: &str = "local/interlock-proxy:lab";
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
        read_only: false,
        no_new_privileges: false,
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
    let observed = docker.observe(&interlock::docker::managed_label()).await.expect("observe");
    let text = include_str!("../../deploy/examples/service-clusters.toml");
    let config = reconcilers::config::parse("service-clusters.toml", text).expect("seed parses").config;
    let report = interlock::preflight::check_report(&engine, &observed, &config);
    assert!(report.text.contains("swarm: manager"), "{}", report.text);
    for node in ["lb-00", "lb-01", "app-00"] {
        assert!(report.text.contains(node), "{}", report.text);
    }
}

#[tokio::test]
async fn a_secret_is_created_listed_and_deleted() {
    let docker = lab().await;
    let name = unique("itest-secret");
    let def = SecretDef {
        name: name.clone(),
        labels: BTreeMap::from([(TEST_LABEL.to_owned(), name.clone())]),
        data: b"token\n".to_vec(),
    };
    let writes = docker.counters().writes();
    let id = docker.create_secret(&def).await.expect("create secret");
    let listed = docker.list_secrets().await.expect("list secrets");
    let again = docker.create_secret(&def).await;
    docker.delete_secret(&id).await.expect("delete secret by ID");
    assert!(!id.is_empty());
    assert_eq!(docker.counters().writes(), writes + 3, "each create and delete is a write");
    assert!(listed.iter().any(|s| s.name == name && s.labels == def.labels && s.id == id), "{listed:?}");
    assert!(matches!(again, Err(interlock::docker::DockerError::Conflict { .. })), "{again:?}");
    let after = docker.list_secrets().await.expect("list secrets");
    assert!(after.iter().all(|s| s.name != name));
    let e = docker.delete_secret(&name).await.unwrap_err();
    assert!(matches!(e, interlock::docker::DockerError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn the_manager_join_token_is_the_swarms() {
    let docker = lab().await;
    let token = docker.manager_join_token().await.expect("manager join token");
    assert_eq!(token, support::docker(&["swarm", "join-token", "-q", "manager"]).trim());
    let e = node_engine("lb-00").manager_join_token().await.unwrap_err();
    assert!(matches!(e, interlock::docker::DockerError::NotManager { .. }), "a worker has none: {e:?}");
}

/// The address of a worker's own engine, from `/run/interlock-lab/env` (`unix:///run/docker-NODE.sock`).
fn node_host(node: &str) -> String {
    lab_env(&format!("LAB_HOST_{}", node.replace('-', "_")))
        .unwrap_or_else(|| panic!("no engine address for lab node {node} in /run/interlock-lab/env"))
}

/// A client of a worker's own engine, as `interlock extension` has it through its mounted socket.
fn node_engine(node: &str) -> DockerClient {
    let host = node_host(node);
    let url = DockerUrl::parse(&host).unwrap_or_else(|e| panic!("bad address {host}: {e}"));
    DockerClient::connect(Some(&url), &Default::default()).expect("connect to the node's engine")
}

/// One replica of `image` pinned to lb-00, labelled as this test's.
fn lb00_service(name: &str, image: &str, networks: Vec<String>, bind_mounts: Vec<BindMount>) -> ServiceDef {
    ServiceDef {
        name: name.to_owned(),
        labels: BTreeMap::from([(TEST_LABEL.to_owned(), name.to_owned())]),
        image: image.to_owned(),
        command: vec![],
        args: vec![],
        env: vec![],
        container_labels: BTreeMap::new(),
        replicas: 1,
        global: false,
        constraints: vec!["node.hostname==lb-00".to_owned()],
        placement_preferences: vec![],
        networks,
        ports: vec![],
        configs: vec![],
        secrets: vec![],
        stop_signal: None,
        stop_grace_period: Some(Duration::from_secs(2)),
        update: UpdatePolicy::default(),
        bind_mounts,
        read_only: false,
        no_new_privileges: false,
        managed: Default::default(),
    }
}

/// Removes a test's service, then its network (which stays in use until the task is gone), on
/// drop: also when an assertion failed.
struct Cleanup {
    service: String,
    network: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker_quiet(&["service", "rm", &self.service]);
        let Some(network) = &self.network else { return };
        for _ in 0..75 {
            let gone = std::process::Command::new("docker").args(["network", "rm", network]).output();
            if gone.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("could not remove test network {network}");
    }
}

/// What `interlock extension` does, against a real proxy task on lb-00 through lb-00's engine:
/// find the container, write a config into it, check it with nginx itself, reload by signal.
#[tokio::test]
async fn node_engine_drives_a_running_proxy_container() {
    let api = lab().await;
    let name = unique("nodeops");
    let network = format!("{name}-net");
    let _cleanup = Cleanup { service: name.clone(), network: Some(network.clone()) };
    let net = NetworkDef {
        name: network.clone(),
        labels: BTreeMap::from([(TEST_LABEL.to_owned(), name.clone())]),
        attachable: true,
        encrypted: false,
    };
    api.create_network(&net).await.expect("create the test network");
    let node = node_engine("lb-00");
    // Subscribed before the task exists: its start must still arrive.
    let mut starts = Box::pin(node.container_starts(&name));
    api.create_service(&lb00_service(&name, PROXY_IMAGE, vec![network.clone()], vec![]))
        .await
        .expect("create the proxy service");

    let containers = eventually("the proxy task running on lb-00", Duration::from_secs(60), || async {
        let found = node.running_containers(&name).await.expect("list containers on lb-00");
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(containers.len(), 1, "{containers:#?}");
    let container = &containers[0];
    assert_eq!(container.service, name);
    let task_id = container.task_id.clone().expect("a Swarm task's container carries its task ID");
    let lb00 = api.list_nodes().await.expect("list nodes").into_iter().find(|n| n.hostname == "lb-00").unwrap();
    assert_eq!(container.node_id.as_deref(), Some(lb00.id.as_str()));
    let task = api.list_tasks().await.expect("list tasks").into_iter().find(|t| t.id == task_id);
    assert!(task.is_some_and(|t| t.node_id == lb00.id), "task {task_id} is the swarm's, on lb-00");
    let started = tokio::time::timeout(Duration::from_secs(10), starts.next()).await;
    let started = started.expect("a start event within 10 s").expect("the stream is open").expect("an event");
    assert_eq!(started, container.id, "container_starts names the started container");
    assert!(node.running_containers("no-such-service-xyz").await.expect("list").is_empty());

    // Write a new config and a file in a new directory; read them back.
    let config = "user www-data;\npid /run/nginx.pid;\nevents {}\nhttp {\n  server {\n    listen 8081;\n    return 200 \"nodeops\\n\";\n  }\n}\n";
    let marker_dir = format!("/etc/{name}/sub");
    let files = vec![
        ("/etc/nginx/nginx.conf".to_owned(), config.as_bytes().to_vec()),
        (format!("{marker_dir}/marker.txt"), b"written by the lab test\n".to_vec()),
    ];
    let writes = node.counters().writes();
    node.write_files(&container.id, &files).await.expect("write files");
    assert_eq!(node.counters().writes(), writes + 1, "one archive upload, counted as a write");
    let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let cat = node.exec(&container.id, &argv(&["cat", "/etc/nginx/nginx.conf"])).await.expect("exec cat");
    assert_eq!((cat.exit_code, cat.output.as_str()), (0, config));
    let marker = format!("{marker_dir}/marker.txt");
    let cat = node.exec(&container.id, &argv(&["cat", &marker])).await.expect("exec cat");
    assert_eq!((cat.exit_code, cat.output.as_str()), (0, "written by the lab test\n"));
    let ls = node.exec(&container.id, &argv(&["ls", "-ld", &marker_dir, &marker])).await.expect("exec ls");
    assert!(ls.output.contains("drwxr-xr-x") && ls.output.contains("-rw-r--r--"), "{}", ls.output);

    // nginx's own check: the written config passes, a broken one fails and says why.
    let check = node.exec(&container.id, &argv(&["nginx", "-t"])).await.expect("exec nginx -t");
    assert_eq!(check.exit_code, 0, "{}", check.output);
    assert!(check.output.contains("syntax is ok"), "{}", check.output);
    let broken = format!("/etc/{name}/broken.conf");
    let files = [(broken.clone(), b"events {}\nhttp { bogus_directive on; }\n".to_vec())];
    node.write_files(&container.id, &files).await.expect("write the broken config");
    let check = node.exec(&container.id, &argv(&["nginx", "-t", "-c", &broken])).await.expect("exec nginx -t -c");
    assert_ne!(check.exit_code, 0, "{}", check.output);
    assert!(check.output.contains("unknown directive \"bogus_directive\""), "{}", check.output);
    let missing = node.exec(&container.id, &argv(&["/no/such/binary"])).await;
    // A command that cannot start is an answer, not an error: the runtime's words and 126.
    let missing = missing.expect("exec of a missing binary");
    assert!(missing.exit_code != 0 && missing.output.contains("/no/such/binary"), "{missing:?}");

    // Reload by signal: the same container keeps running, now on the new config.
    node.signal(&container.id, "SIGHUP").await.expect("SIGHUP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = node.running_containers(&name).await.expect("list containers");
    assert_eq!(after.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [container.id.as_str()]);
    let listening =
        node.exec(&container.id, &argv(&["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6"])).await.expect("exec");
    assert!(listening.output.contains(":1F91 "), "nginx listens on 8081 after the reload: {}", listening.output);

    let e = node.exec("no-such-container-xyz", &argv(&["true"])).await.unwrap_err();
    assert!(matches!(e, interlock::docker::DockerError::NotFound { .. }), "{e:?}");
}

/// A task on lb-00 that mounts `/var/run/docker.sock` reaches lb-00's engine, not the manager's
/// (the lab binds each worker's own socket there in its dockerd's mount namespace).
#[tokio::test]
async fn a_task_mounting_the_docker_socket_reaches_its_own_nodes_engine() {
    let api = lab().await;
    let name = unique("nodesock");
    let _cleanup = Cleanup { service: name.clone(), network: None };
    let socket = BindMount { source: "/var/run/docker.sock".to_owned(), target: "/var/run/docker.sock".to_owned() };
    api.create_service(&lb00_service(&name, APP_IMAGE, vec![], vec![socket])).await.expect("create service");
    let node = node_engine("lb-00");
    let container = eventually("the task running on lb-00", Duration::from_secs(60), || async {
        node.running_containers(&name).await.expect("list containers on lb-00").into_iter().next()
    })
    .await;

    let host = node_host("lb-00");
    let pid = docker(&["-H", &host, "inspect", "--format", "{{.State.Pid}}", &container.id]);
    let seen = format!("/proc/{}/root/var/run/docker.sock", pid.trim());
    let inode = |path: &str| std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).ino();
    let own = host.strip_prefix("unix://").expect("a unix socket");
    assert_eq!(
        inode(&seen),
        inode(own),
        "the task's docker.sock is not lb-00's socket {own} (a lab from before the per-node socket: run `deploy/lab/swarm-lab.sh up`)"
    );
    assert_ne!(inode(&seen), inode("/run/docker.sock"), "not the manager's");

    // And it answers as lb-00's engine.
    let url = DockerUrl::Unix(seen.clone());
    let through_task = DockerClient::connect(Some(&url), &Default::default()).expect("connect");
    let engine = through_task.engine().await.expect("the engine behind the task's socket answers");
    assert_eq!(engine.name, "lb-00");
}
