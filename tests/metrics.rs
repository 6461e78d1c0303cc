//! `/metrics`, `/ready` and `interlock status`, without the lab: the real listener
//! (`server::serve_on` on a loopback port) serving a `Metrics` fed by a made-up pass, its
//! `/metrics` read by two Prometheus text parsers (the `prometheus-parse` crate, and a strict one
//! in `support::metrics` that rejects anything the format does not allow), every family checked
//! by name, type and labels; `/ready` before and after a pass; and the `interlock status` binary
//! printing the table. On the lab: `tests/lab/metrics.rs`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use interlock::core::pass_report::PassReport;
use interlock::core::server::{self, Endpoints};
use interlock::core::status;
use interlock::extension_api::TaskReport;
use reconcilers::observed::{ConfigDef, ServiceDef};
use reconcilers::plan::{Action, ClusterPlan, Plan};
use reconcilers::routes::Quarantined;
use support::metrics::{check_families, count, get_text, interlock_cli, parse, parse_strict, value};
use support::request;

fn update(name: &str) -> Action {
    Action::UpdateService {
        id: format!("{name}-id"),
        version: 7,
        def: ServiceDef { name: name.into(), ..ServiceDef::default() },
        changes: vec!["image".into()],
    }
}

/// A pass over two extensions: us-east wrote a new config and rolled its proxy, with two
/// quarantined services (one with a label value the format must escape); us-west is held and
/// its writes failed; a node's labels were updated; an orphan config was deleted.
fn made_up_pass() -> PassReport {
    let mut plan = Plan::default();
    let config = ConfigDef { name: "interlock-proxy-us-east-1".into(), labels: BTreeMap::new(), data: vec![] };
    plan.clusters.insert(
        "us-east".into(),
        ClusterPlan {
            actions: vec![Action::CreateConfig(config), update("interlock-proxy-us-east")],
            config_change: Some((String::new(), "events {}".into())),
            quarantined: vec![
                Quarantined {
                    service: "bad".into(),
                    reason: "com.docker.lb.port=\"http\" is not a port number".into(),
                },
                Quarantined { service: "worse".into(), reason: "a \\ and a\nnewline".into() },
            ],
            drift: vec!["service interlock-proxy-us-east: ports edited by hand".into()],
            ..ClusterPlan::default()
        },
    );
    plan.clusters.insert(
        "us-west".into(),
        ClusterPlan {
            actions: vec![update("interlock-ext-us-west")],
            conflicts: vec!["the new proxy config is rejected by nginx".into()],
            ..ClusterPlan::default()
        },
    );
    plan.nodes.push(Action::UpdateNode {
        id: "n1".into(),
        version: 3,
        hostname: "lb-00".into(),
        labels: BTreeMap::new(),
        changes: vec!["region".into()],
    });
    plan.orphans.push(Action::DeleteConfig { id: "c9".into(), name: "interlock-proxy-gone-1".into() });
    let mut failures = BTreeMap::new();
    failures.insert("us-west".into(), "update service interlock-ext-us-west: rejected".into());
    PassReport { plan, writes: 4, failures, ..PassReport::default() }
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_documented_families() {
    let endpoints = Endpoints::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(server::serve_on(listener, endpoints.clone()));

    let health = get_text(port, "/health").await;
    assert_eq!(health.status, 200);
    let ready = get_text(port, "/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "not ready: no pass has read the swarm yet\n"));

    // A pass that could not read the swarm, then the made-up one.
    status::record_failed_pass(&endpoints.status, "connection refused");
    endpoints.metrics.record_failed_pass(Duration::from_millis(3));
    let ready = get_text(port, "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("connection refused"), "{}", ready.body);
    let report = made_up_pass();
    status::record(&endpoints.status, &report.plan, &report.failures, report.writes);
    let now = status::unix_now();
    endpoints.metrics.record_pass(&report, Duration::from_millis(120), now);
    endpoints.metrics.record_reconnect();
    endpoints.metrics.label_to_config.observe(1.5);
    let task = "k3j2h1g0f9e8d7c6b5a4z3y2x";
    endpoints.deliveries.set_tasks("us-east", [(task.to_owned(), "lb-00".to_owned())].into());
    endpoints
        .deliveries
        .accept_report(
            "us-east",
            TaskReport {
                task: "k3j2h1g0f9e8d7c6b5a4z3y2x".into(),
                node: "lb-00".into(),
                container: "c1".into(),
                hash: "3f2a9c1b7d0e55aa".into(),
                generation: 0,
                rejected: None,
                error: None,
                applied_at: now - 30,
                took_ms: 41,
            },
        )
        .expect("a known task's report");
    assert_eq!(get_text(port, "/ready").await.status, 200);

    let answer = get_text(port, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let families = parse(&answer.body);
    check_families(&families, &[]);
    let ok = [("result", "ok")];
    assert_eq!(value(&families, "interlock_passes_total", &ok), Some(1.0));
    assert_eq!(value(&families, "interlock_passes_total", &[("result", "error")]), Some(1.0));
    assert_eq!(count(&families, "interlock_pass_duration_seconds"), 2.0);
    let writes =
        |operation, kind| value(&families, "interlock_writes_total", &[("operation", operation), ("kind", kind)]);
    assert_eq!(writes("create", "config"), Some(1.0));
    assert_eq!(writes("update", "service"), Some(1.0), "us-west's failed update is not counted");
    assert_eq!(writes("update", "node"), Some(1.0));
    assert_eq!(writes("delete", "config"), Some(1.0));
    assert_eq!(value(&families, "interlock_drift_corrections_total", &[]), Some(1.0));
    assert_eq!(value(&families, "interlock_drifted_objects", &[]), Some(0.0));
    let east = [("extension", "us-east")];
    let west = [("extension", "us-west")];
    assert_eq!(value(&families, "interlock_quarantined_services", &east), Some(2.0));
    assert_eq!(value(&families, "interlock_quarantined_services", &west), Some(0.0));
    assert_eq!(value(&families, "interlock_cluster_held", &east), Some(0.0));
    assert_eq!(value(&families, "interlock_cluster_held", &west), Some(1.0));
    assert_eq!(value(&families, "interlock_event_stream_reconnects_total", &[]), Some(1.0));
    assert_eq!(value(&families, "interlock_cluster_last_success_timestamp_seconds", &east), Some(now as f64));
    assert_eq!(value(&families, "interlock_cluster_last_success_timestamp_seconds", &west), None, "us-west failed");
    assert_eq!(count(&families, "interlock_label_to_config_seconds"), 1.0);
    let task = [("extension", "us-east"), ("task", "k3j2h1g0f9e8d7c6b5a4z3y2x"), ("node", "lb-00")];
    let age = value(&families, "interlock_proxy_task_config_age_seconds", &task).expect("the task's config age");
    assert!((30.0..40.0).contains(&age), "{age}");

    // OpenMetrics for a scraper that asks for it.
    let open = request("127.0.0.1", port, "localhost", "/metrics", &[("Accept", "application/openmetrics-text")])
        .await
        .unwrap();
    assert!(open.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")));
    assert!(open.body.ends_with("# EOF\n"));

    // `interlock status` prints the same state as a table.
    let url = format!("http://127.0.0.1:{port}");
    let (ok, table) = interlock_cli(&["status", "--url", &url]).await;
    assert!(ok, "{table}");
    assert!(table.starts_with("passes 2, writes 4, last pass "), "{table}");
    assert!(table.contains("us-east    2            0     0         -\n"), "{table}");
    assert!(table.contains("us-west    0            1     1         -\n"), "{table}");
    assert!(
        table.contains("us-east: quarantined\n  bad: com.docker.lb.port=\"http\" is not a port number\n"),
        "{table}"
    );
    assert!(table.contains("  k3j2h1g0f9e8  lb-00  3f2a9c1b7d0e  3"), "the task's hash and age: {table}");
    let (ok, text) = interlock_cli(&["status", "--url", "http://127.0.0.1:1"]).await;
    assert!(!ok && text.contains("cannot connect to http://127.0.0.1:1/status"), "{text}");
    server.abort();
}

#[test]
fn the_strict_parser_rejects_what_the_format_does_not_allow() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(parse_strict(ok).is_ok());
    for bad in [
        "# TYPE a_total counter\na_total 2\n",                       // no HELP
        "# HELP a A.\n# TYPE a gauge\nb 2\n",                        // another family's sample
        "# HELP a A.\n# TYPE a gauge\na{x=1} 2\n",                   // unquoted label value
        "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 2\na{x=\"1\"} 3\n", // a series twice
        "# HELP a A.\n# TYPE a gauge\na 2",                          // no final newline
        "# HELP a A.\n# TYPE a histogram\na_bucket{le=\"1\"} 2\na_count 2\na_sum 1\n", // no +Inf
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 2\n",             // bad escape
    ] {
        assert!(parse_strict(bad).is_err(), "accepted: {bad:?}");
    }
}
