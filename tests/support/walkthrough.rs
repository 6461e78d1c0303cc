//! The service-clusters walk-through's steps and checks, shared by the tests that run it
//! (`lab/walkthrough.rs` by `docker service create`, `lab/stack.rs` by `docker stack deploy`): its
//! TOML with hitless updates on, the hand pins, the demo apps, and `/ping` through the
//! load-balancer nodes.

use std::time::Duration;

use super::service::Create;
use super::{Answer, docker, eventually, node_addr, request};

/// The walk-through's TOML for the lab (images and the extension's Args changed, nothing else).
pub const LAB_CONFIG: &str = "deploy/examples/service-clusters.lab.toml";
/// The walk-through's `ehazlett/docker-demo`, built by the lab from `src/bin/docker-demo.rs`.
pub const DEMO_IMAGE: &str = "local/docker-demo:lab";
/// The demo apps, each named after its network.
pub const APPS: [&str; 2] = ["demo-east", "demo-west"];

/// [`LAB_CONFIG`]'s text with `HitlessServiceUpdate = true` added to each extension, each line
/// passed through `edit` first.
pub fn hitless_config(edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(LAB_CONFIG).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(&edit(line));
        out.push('\n');
        if line.trim_start().starts_with("ServiceCluster =") {
            out.push_str("    HitlessServiceUpdate = true\n");
        }
    }
    assert_eq!(out.matches("HitlessServiceUpdate").count(), 2);
    out
}

/// `docker service update ARGS… SERVICE`, as an operator types it. A user whose command meets
/// interlock's own update of the same service ("update out of sequence") runs it again; so
/// does this.
pub fn update_by_hand(args: &[&str], service: &str) {
    for attempt in 0.. {
        let output = std::process::Command::new("docker")
            .args(["service", "update", "--detach"])
            .args(args)
            .arg(service)
            .output()
            .expect("run the docker CLI");
        if output.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("out of sequence") && attempt < 5, "docker service update {service}: {err}");
    }
}

/// `docker service update --constraint-add … interlock-proxy-REGION`, as the document writes it.
pub fn pin_proxy(region: &str) {
    let region_label = format!("node.labels.region=={region}");
    let args = ["--constraint-add", "node.labels.nodetype==loadbalancer", "--constraint-add", &region_label];
    update_by_hand(&args, &format!("interlock-proxy-{region}"));
}

/// The constraints [`pin_proxy`] adds.
pub fn pinned(region: &str) -> Vec<String> {
    vec!["node.labels.nodetype==loadbalancer".to_owned(), format!("node.labels.region=={region}")]
}

/// The document's `docker service create` of the demo app `name` (on the network of its name)
/// in service cluster `region`.
pub fn create_demo_app(name: &str, region: &str) {
    Create::new()
        .name(name)
        .network(name)
        .option("--detach=true")
        .label("com.docker.lb.hosts", &format!("{name}.local"))
        .label("com.docker.lb.port", "8080")
        .label("com.docker.lb.service_cluster", region)
        // The shell of the document's `--env METADATA="us-east"` drops the quotes.
        .env("METADATA", region)
        .image(DEMO_IMAGE)
        .run_with(docker);
}

/// `curl -H "Host: HOST" http://$(docker node inspect -f '{{ .Status.Addr }}' NODE)/ping`.
pub async fn ping(node: &str, host: &str) -> Option<Answer> {
    let addr = docker(&["node", "inspect", "-f", "{{ .Status.Addr }}", node]).trim().to_owned();
    assert_eq!(addr, node_addr(node), "the node's address is the lab's");
    request(&addr, 80, host, "/ping", &[]).await
}

/// The answer for `host` through `node`, once its status is `status`.
pub async fn answer_becomes(node: &str, host: &str, status: u16) -> Answer {
    eventually(&format!("{host}/ping via {node} answers {status}"), Duration::from_secs(60), || async {
        ping(node, host).await.filter(|a| a.status == status)
    })
    .await
}

/// The walk-through's app answers with its instance and its METADATA.
pub fn assert_demo_answer(answer: &Answer, metadata: &str) {
    let json: serde_json::Value = serde_json::from_str(answer.body.trim())
        .unwrap_or_else(|e| panic!("/ping answers JSON ({e}): {:?}", answer.body));
    assert_eq!(json["metadata"], metadata, "{json}");
    assert_eq!(json["version"], "0.1", "{json}");
    assert!(json["instance"].as_str().is_some_and(|i| !i.is_empty()), "{json}");
    assert_eq!(json["request_id"].as_str().map(str::len), Some(32), "{json}");
}

/// Each cluster knows only its own app: 200 with its METADATA through its node, 404 across.
pub async fn assert_clusters_isolated() {
    assert_demo_answer(&answer_becomes("lb-00", "demo-east.local", 200).await, "us-east");
    answer_becomes("lb-00", "demo-west.local", 404).await;
    assert_demo_answer(&answer_becomes("lb-01", "demo-west.local", 200).await, "us-west");
    answer_becomes("lb-01", "demo-east.local", 404).await;
}

/// Waits until requests through `node` for `host` have been answered by `n` instances.
pub async fn answered_by(node: &str, host: &str, n: usize) {
    let instances = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let instances = &instances;
    eventually(&format!("{n} {host} instances answer through {node}"), Duration::from_secs(60), || async move {
        let answer = ping(node, host).await.filter(|a| a.status == 200)?;
        let json: serde_json::Value = serde_json::from_str(answer.body.trim()).ok()?;
        let mut seen = instances.lock().unwrap();
        seen.insert(json["instance"].as_str()?.to_owned());
        (seen.len() == n).then_some(())
    })
    .await;
}
