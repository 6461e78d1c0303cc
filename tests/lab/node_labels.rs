//! Managed node labels and drift, on the lab, through the built binary (`interlock apply` and
//! `interlock plan`, as an operator runs them):
//!
//! - `[NodeLabels."app-00"]` puts `il-test-tier` and `il-test-zone` on app-00, beside a label
//!   set there by hand (`il-test-hand`), and a proxy constrained to
//!   `node.labels.il-test-tier==edge` lands on app-00 and answers on its host-mode port;
//! - a managed label edited by hand is drift: `plan` names it, the next `apply` reverts it;
//! - a key removed from the TOML goes from the node, and only it: the hand label stays;
//! - the proxy's published port edited by hand (`docker service update --publish-rm/-add`) is
//!   drift, named by `plan` and reverted by the next `apply`;
//! - with `DriftPolicy = "report"` the same edits are named by `plan` and left as they are.
//!
//! Ports 8093/8463 are used by no other test. Everything is removed at the end, also on failure.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use support::{docker, docker_quiet, eventually, get, interlock, lab, node_addr};

const NODE: &str = "app-00";
const PROXY: &str = "interlock-proxy-iltest";
const EXTENSION: &str = "interlock-ext-iltest";
const KEYS: [&str; 3] = ["il-test-tier", "il-test-zone", "il-test-hand"];
const RECORD: [&str; 2] = ["com.docker.interlock.managed-node-labels", "com.docker.interlock.node-labels-hash"];

/// The test's TOML: one extension whose proxy is placed by a label `[NodeLabels]` declares.
fn config(extra_top: &str, node_labels: &str) -> String {
    format!(
        r#"{extra_top}
PollInterval = "1s"

[Extensions.iltest]
  Image = "local/interlock:lab"
  Args = ["extension"]
  ProxyImage = "local/interlock-proxy:lab"
  ProxyConfigPath = "/etc/nginx/nginx.conf"
  ServiceCluster = "iltest"
  ProxyConstraints = ["node.labels.il-test-tier==edge"]
  PublishMode = "host"
  PublishedPort = 8093
  TargetPort = 80
  PublishedSSLPort = 8463
  TargetSSLPort = 443
  [Extensions.iltest.Config]
    User = "nginx"
    PidPath = "/var/run/proxy.pid"

[NodeLabels."{NODE}"]
{node_labels}
"#
    )
}

/// Removes what the test made when dropped, whatever happened.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        clean();
    }
}

/// Removes the test's services, their configs, and every label the test (or interlock for it)
/// put on the node.
fn clean() {
    support::remove_services(&[PROXY, EXTENSION]);
    let configs = docker(&["config", "ls", "-q", "--filter", "label=com.docker.interlock.extension=iltest"]);
    for id in configs.split_whitespace() {
        docker_quiet(&["config", "rm", id]);
    }
    let present = labels();
    let mut args = vec!["node", "update"];
    for key in KEYS.iter().chain(&RECORD).filter(|k| present.contains_key(**k)) {
        args.extend(["--label-rm", key]);
    }
    if args.len() > 2 {
        args.push(NODE);
        docker_quiet(&args);
    }
}

/// app-00's labels now.
fn labels() -> std::collections::BTreeMap<String, String> {
    let json = docker(&["node", "inspect", NODE, "--format", "{{json .Spec.Labels}}"]);
    serde_json::from_str::<Option<_>>(json.trim()).expect("labels as JSON").unwrap_or_default()
}

/// The published ports of the proxy service's spec, as `published:target`.
fn published_ports() -> Vec<String> {
    let json = docker(&["service", "inspect", PROXY, "--format", "{{json .Spec.EndpointSpec.Ports}}"]);
    let ports: Vec<serde_json::Value> = serde_json::from_str(json.trim()).expect("ports as JSON");
    ports.iter().map(|p| format!("{}:{}", p["PublishedPort"], p["TargetPort"])).collect()
}

/// `interlock apply`, which must succeed.
fn apply(path: &std::path::Path) -> String {
    let (code, out) = interlock(&["apply", "-c", path.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(code, 0, "interlock apply failed:\n{out}");
    out
}

/// `interlock plan`: its exit code and text.
fn plan(path: &std::path::Path) -> (i32, String) {
    interlock(&["plan", "-c", path.to_str().unwrap()])
}

/// Moves the proxy's HTTP port from 8093 to 8094 by hand, as an operator would.
fn move_port_by_hand() {
    docker(&[
        "service",
        "update",
        "--publish-rm",
        "published=8093,target=80,mode=host",
        "--publish-add",
        "published=8094,target=80,mode=host",
        PROXY,
    ]);
}

#[tokio::test]
async fn node_labels_are_managed_as_declared_and_drift_is_reverted_or_reported() {
    let api = lab().await;
    support::fresh_lab(&api, &[PROXY, EXTENSION], &[]).await;
    clean(); // Leftovers of an earlier run: start from a node without the test's labels.
    let _cleanup = Cleanup;
    docker(&["node", "update", "--label-add", "il-test-hand=1", NODE]);

    let dir = std::env::temp_dir().join(format!("interlock-node-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interlock.toml");
    let both = "  il-test-tier = \"edge\"\n  il-test-zone = \"z1\"";
    std::fs::write(&path, config("", both)).unwrap();

    // Applied: the labels, beside the hand label; the proxy on app-00, answering.
    let out = apply(&path);
    assert!(out.contains("update node app-00 (+il-test-tier=edge, +il-test-zone=z1)"), "{out}");
    let l = labels();
    assert_eq!((l["il-test-tier"].as_str(), l["il-test-zone"].as_str()), ("edge", "z1"), "{l:?}");
    assert_eq!(l["il-test-hand"], "1");
    assert_eq!(l[RECORD[0]], r#"["il-test-tier","il-test-zone"]"#);
    let nodes = docker(&["service", "ps", PROXY, "--filter", "desired-state=running", "--format", "{{.Node}}"]);
    assert_eq!(nodes.trim(), NODE, "the proxy runs where the declared label put it");
    let addr = node_addr(NODE);
    eventually("the proxy answers on app-00:8093", Duration::from_secs(30), || async {
        get(&addr, 8093, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;
    let (code, out) = plan(&path);
    assert_eq!(code, 0, "converged: nothing to do\n{out}");

    // A managed label edited by hand: drift, named by plan, reverted by apply.
    docker(&["node", "update", "--label-add", "il-test-zone=by-hand", NODE]);
    let (code, out) = plan(&path);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("drift: node app-00: label il-test-zone edited by hand; reverted by this plan"), "{out}");
    apply(&path);
    assert_eq!(labels()["il-test-zone"], "z1", "reverted");

    // A key removed from the TOML: it goes, and nothing else does.
    std::fs::write(&path, config("", "  il-test-tier = \"edge\"")).unwrap();
    let out = apply(&path);
    assert!(out.contains("update node app-00 (-il-test-zone)"), "{out}");
    let l = labels();
    assert!(!l.contains_key("il-test-zone"), "{l:?}");
    assert_eq!((l["il-test-tier"].as_str(), l["il-test-hand"].as_str()), ("edge", "1"), "{l:?}");
    assert_eq!(l[RECORD[0]], r#"["il-test-tier"]"#);

    // The proxy's published port moved by hand: drift, named by plan, reverted by apply.
    move_port_by_hand();
    let (code, out) = plan(&path);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("drift: service interlock-proxy-iltest: ports edited by hand; reverted by this plan"),
        "{out}"
    );
    apply(&path);
    assert_eq!(published_ports(), ["8093:80", "8463:443"]);
    eventually("the proxy answers on app-00:8093 again", Duration::from_secs(30), || async {
        get(&addr, 8093, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;

    // DriftPolicy = "report": the same edits are named and left alone. (il-test-zone comes back
    // first, a TOML edit: a hand edit of il-test-tier would leave the proxy's next task nowhere
    // to run.)
    std::fs::write(&path, config("DriftPolicy = \"report\"", both)).unwrap();
    let out = apply(&path);
    assert!(out.contains("update node app-00 (+il-test-zone=z1)") && !out.contains("drift"), "{out}");
    move_port_by_hand();
    docker(&["node", "update", "--label-add", "il-test-zone=by-hand", NODE]);
    let (code, out) = plan(&path);
    assert_eq!(code, 0, "nothing is written\n{out}");
    for line in [
        "drift: node app-00: label il-test-zone edited by hand; not reverted (DriftPolicy = \"report\")",
        "drift: service interlock-proxy-iltest: ports edited by hand; not reverted (DriftPolicy = \"report\")",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let out = apply(&path);
    assert!(out.contains("converged: 0 write(s)"), "{out}");
    assert_eq!(labels()["il-test-zone"], "by-hand");
    assert_eq!(published_ports(), ["8094:80", "8463:443"]);
}
