//! `/metrics`, `/ready` and `interlock status` on the lab: `interlock run` in-process with a
//! one-extension TOML, an app and a badly labelled app; `/metrics` then counts passes and writes,
//! and the quarantined gauge holds the bad app. Without the lab (a made-up pass, both parsers,
//! every family): `tests/metrics.rs`.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use interlock::core::status;
use support::metrics::{check_families, count, get_text, interlock_cli, parse, value};
use support::{docker, docker_quiet, eventually, lab, node_addr, request, service};

/// The lab's TOML: one extension, its proxy on lb-00:8088, the status listener on loopback.
const LAB_PORT: u16 = 18089;
const LAB_TOML: &str = r#"
ListenAddr = "127.0.0.1:18089"
PollInterval = "1s"

[Extensions.metrics]
  Image = "local/interlock:lab"
  Args = ["-D", "extension"]
  ServiceName = "interlock-ext-metrics"
  ProxyImage = "local/interlock-proxy:lab"
  ProxyServiceName = "interlock-proxy-metrics"
  ProxyConstraints = ["node.hostname==lb-00"]
  PublishMode = "host"
  PublishedPort = 8088
  TargetPort = 80
"#;
const APPS: &[&str] = &["metrics-good", "metrics-bad"];

fn app(name: &str, port: &str) {
    service::Create::new()
        .quiet()
        .detach()
        .name(name)
        .network("metrics-apps")
        .constraint("node.hostname==app-00")
        .label("com.docker.lb.hosts", &format!("{name}.local"))
        .label("com.docker.lb.port", port)
        .image("local/docker-demo:lab")
        .run_with(docker);
}

/// Removes the proxy config objects an earlier run left: the loop would adopt them (same
/// content) instead of creating them, and create no config to count.
fn remove_proxy_configs() {
    let names = docker(&["config", "ls", "-q", "--filter", "name=interlock-proxy-metrics"]);
    for id in names.split_whitespace() {
        docker_quiet(&["config", "rm", id]);
    }
}

#[tokio::test]
async fn run_on_the_lab_counts_passes_writes_and_quarantines() {
    let api = lab().await;
    support::fresh_lab(&api, APPS, &["metrics-apps"]).await;
    remove_proxy_configs();
    let dir = std::env::temp_dir().join(format!("interlock-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interlock.toml");
    std::fs::write(&path, LAB_TOML).unwrap();
    let config = reconcilers::config::parse("t", LAB_TOML).unwrap().config;

    let ctx =
        interlock::core::context::Context::new(api.clone(), interlock::core::proxycheck::ProxyChecker::discover());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loop_task = tokio::spawn(interlock::core::controller::run(ctx, path.clone(), config, async {
        let _ = stopped.await;
    }));
    let lb_00 = node_addr("lb-00");
    eventually("the proxy on lb-00:8088", Duration::from_secs(90), || async {
        support::get(&lb_00, 8088, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;

    // An app, and one whose port label is not a number: quarantined.
    app("metrics-good", "8080");
    app("metrics-bad", "http");
    eventually("metrics-good.local through the proxy", Duration::from_secs(90), || async {
        support::get(&lb_00, 8088, "metrics-good.local").await.filter(|a| a.status == 200)
    })
    .await;
    let families = eventually("metrics after the app's route", Duration::from_secs(30), || async {
        let answer = request("127.0.0.1", LAB_PORT, "localhost", "/metrics", &[]).await?;
        let families = parse(&answer.body);
        let quarantined = value(&families, "interlock_quarantined_services", &[("extension", "metrics")]);
        (quarantined == Some(1.0) && count(&families, "interlock_label_to_config_seconds") >= 1.0).then_some(families)
    })
    .await;
    // No hitless cluster here: no proxy task reports a config age.
    check_families(&families, &["interlock_proxy_task_config_age_seconds"]);
    let passes = value(&families, "interlock_passes_total", &[("result", "ok")]).unwrap_or(0.0);
    assert!(passes >= 2.0, "{passes} passes");
    assert!(count(&families, "interlock_pass_duration_seconds") >= passes);
    let writes = |operation, kind| {
        value(&families, "interlock_writes_total", &[("operation", operation), ("kind", kind)]).unwrap_or(0.0)
    };
    assert!(writes("create", "service") >= 2.0, "the proxy and the extension");
    assert!(writes("create", "config") >= 1.0, "the proxy's config");
    assert!(writes("update", "service") >= 1.0, "the proxy moved onto the config routing metrics-good");
    assert_eq!(value(&families, "interlock_cluster_held", &[("extension", "metrics")]), Some(0.0));
    let last = value(&families, "interlock_cluster_last_success_timestamp_seconds", &[("extension", "metrics")]);
    assert!(last.is_some_and(|t| t >= (status::unix_now() - 60) as f64), "{last:?}");
    assert_eq!(get_text(LAB_PORT, "/ready").await.status, 200);

    let (ok, table) = interlock_cli(&["status", "--url", &format!("http://127.0.0.1:{LAB_PORT}")]).await;
    assert!(ok, "{table}");
    assert!(table.contains("metrics    1            0     0"), "{table}");
    assert!(table.contains("metrics-bad: com.docker.lb.port=\"http\" is not a port number"), "{table}");
    println!("{table}");

    let _ = stop.send(());
    loop_task.await.unwrap().unwrap();
    support::remove_services(APPS);
    support::remove_owned_services(&api).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    remove_proxy_configs();
    docker_quiet(&["network", "rm", "metrics-apps"]);
    std::fs::remove_dir_all(&dir).ok();
}
